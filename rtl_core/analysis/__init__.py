"""rtl_core.analysis"""

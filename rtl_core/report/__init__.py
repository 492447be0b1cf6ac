"""rtl_core.report"""

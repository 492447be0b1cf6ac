"""rtl_core.data"""

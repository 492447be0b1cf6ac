"""rtl_core.evaluate"""

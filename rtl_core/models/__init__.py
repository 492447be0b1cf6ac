"""rtl_core.models"""

"""rtl_core.pretrain"""

"""rtl_core: CT-domain vs natural-image pretraining, measured (Jonske et al., CMPB 2025)."""

__version__ = "0.1.0"

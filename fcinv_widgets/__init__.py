"""fcinv_widgets: ML inversion of force constants from single-crystal INS."""

__version__ = "0.1.0"

"""kagglekit: a Kaggle competition solution package (see ARCHITECTURE.md)."""
__version__ = "0.1.0"

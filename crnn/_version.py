"""The version of crnn (its own module so that the modules below the package can read it)."""
__version__ = "0.1.0"

"""The version of crnn, in a module of its own so that modules below the package read it."""
__version__ = "0.1.0"

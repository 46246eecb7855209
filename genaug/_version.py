"""The package version (a leaf: imports nothing)."""

__version__ = "0.2.0"

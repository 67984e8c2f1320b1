"""The package version, in one place: pyproject.toml reads it from here, and files scaleworld
writes record it (this module imports nothing, so low layers need not import the public face)."""

__version__ = "0.1.0"

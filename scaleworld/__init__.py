"""scaleworld: scaling studies of transformer world models on Atari 100k."""

__version__ = "0.1.0"

"""refmodel: bit-accurate fixed-point and minifloat reference model of a transformer layer."""

__version__ = "0.1.0"

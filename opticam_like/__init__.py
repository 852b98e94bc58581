"""opticam_like (integration in progress)."""

__version__ = "0.1.0"

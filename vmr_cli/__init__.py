"""vmr: find moments in a personal video library from a sentence."""

__version__ = "0.1.0"

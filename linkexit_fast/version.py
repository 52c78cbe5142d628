"""The package's version, below every module that records it (checkpoints write it)."""
__version__ = "0.1.0"

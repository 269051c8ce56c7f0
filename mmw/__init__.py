"""Multi-Model Workflows: shared code for export, serving, launcher and clients."""

__version__ = "0.1.0"

"""Conditioning for stemforge models: offline text-instruction encoder, style encoder, mixture pyramid, stem masks and null embeddings."""

from stemforge.conditioning.__about__ import __version__

__all__ = ["__version__"]

"""Conditioning for stemforge models: offline text-instruction encoder, style encoder, mixture pyramid, stem masks and null embeddings."""

from stemforge.conditioning.__about__ import __version__
from stemforge.conditioning.mixture import MixtureConditioner, MixtureConditionerConfig
from stemforge.conditioning.style import StyleEncoder, StyleEncoderConfig, StyleStatistics, style_statistics
from stemforge.conditioning.text import TextEncoder, TextEncoding, minilm_model_dir

__all__ = [
    "MixtureConditioner",
    "MixtureConditionerConfig",
    "StyleEncoder",
    "StyleEncoderConfig",
    "StyleStatistics",
    "TextEncoder",
    "TextEncoding",
    "__version__",
    "minilm_model_dir",
    "style_statistics",
]

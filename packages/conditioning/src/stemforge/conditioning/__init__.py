"""Conditioning for stemforge models: offline text-instruction encoder, style encoder."""

from stemforge.conditioning.__about__ import __version__
from stemforge.conditioning.style import StyleEncoder, StyleEncoderConfig, StyleStatistics, style_statistics
from stemforge.conditioning.text import TextEncoder, TextEncoding, minilm_model_dir

__all__ = [
    "StyleEncoder",
    "StyleEncoderConfig",
    "StyleStatistics",
    "TextEncoder",
    "TextEncoding",
    "__version__",
    "minilm_model_dir",
    "style_statistics",
]

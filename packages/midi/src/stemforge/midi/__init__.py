"""Multi-track MIDI <-> piano-roll tensors, categorical voices, stem grouping and the JSB chorales."""

from stemforge.midi.__about__ import __version__

__all__ = ["__version__"]

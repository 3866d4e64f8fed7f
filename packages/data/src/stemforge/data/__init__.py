"""Audio I/O, resampling, Slakh2100 reader, Slakh-style SoundFont rendering, subtractive-training triplets and embedded corpora."""

from stemforge.data.__about__ import __version__

__all__ = ["__version__"]

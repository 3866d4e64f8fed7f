"""stemforge-insert: separate, generate, arrange and insert stems in audio and MIDI from the command line, on any length."""

from stemforge.insert.__about__ import __version__

__all__ = ["__version__"]

"""stemforge-train: data preparation and training of codecs, multi-track LDMs and MIDI insertion models on lightning-fabric + DeepSpeed."""

from stemforge.train.__about__ import __version__

__all__ = ["__version__"]

"""FAD (float64, FAD-infinity), embedders, SI-SDRi (MSDM protocol), Mel-MSE, multi-resolution STFT and MIDI metrics as torchmetrics Metrics."""

from stemforge.metrics.__about__ import __version__

__all__ = ["__version__"]

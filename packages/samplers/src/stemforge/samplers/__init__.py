"""Noise schedules, objectives and samplers (DDPM, DDIM, DPM-Solver++, CFG, inpainting, MSDM separation, style grounding, masked discrete diffusion) for any model callable."""

from stemforge.samplers.__about__ import __version__

__all__ = ["__version__"]

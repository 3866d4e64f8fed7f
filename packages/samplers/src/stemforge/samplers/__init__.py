"""Noise schedules, objectives and samplers (DDPM, DDIM, DPM-Solver++, CFG, inpainting, MSDM separation, style grounding, masked discrete diffusion) for any model callable."""

from stemforge.samplers.__about__ import __version__
from stemforge.samplers._common import Generators, StepInfo, timesteps
from stemforge.samplers.cfg import ClassifierFreeGuidance, cfg_rescale
from stemforge.samplers.coconet_gibbs import gibbs_sample
from stemforge.samplers.ddim import ddim_invert, ddim_sample, ddim_step
from stemforge.samplers.ddpm import ddpm_sample
from stemforge.samplers.discrete_nll import chain_rule_nll, nats_per_frame
from stemforge.samplers.dpm_solver import dpm_solver_pp_2m_sample, dpm_solver_pp_3m_sample
from stemforge.samplers.inpainting import inpaint_sample, repaint_moves
from stemforge.samplers.masked_discrete import masked_diffusion_loss, unmask_sample
from stemforge.samplers.mixing import Mixing, apply_mixing, project_to_mixture
from stemforge.samplers.msdm_dirac import msdm_dirac_separate
from stemforge.samplers.msdm_gaussian import LikelihoodStep, likelihood_gain, msdm_gaussian_separate
from stemforge.samplers.objectives import (
    Prediction,
    add_noise,
    convert_prediction,
    ddpm_loss,
    given_stems_loss,
    prediction_from,
    random_given_mask,
    x0_and_eps,
)
from stemforge.samplers.oracles import DiagonalGaussianDenoiser, GaussianMixtureDenoiser, MarkovChainOracle
from stemforge.samplers.schedules import NoiseSchedule, ScheduleConfig, rescale_zero_terminal_snr
from stemforge.samplers.style_grounding import StyleGrounding, ground_style

__all__ = [
    "ClassifierFreeGuidance",
    "DiagonalGaussianDenoiser",
    "GaussianMixtureDenoiser",
    "Generators",
    "LikelihoodStep",
    "MarkovChainOracle",
    "Mixing",
    "NoiseSchedule",
    "Prediction",
    "ScheduleConfig",
    "StepInfo",
    "StyleGrounding",
    "__version__",
    "add_noise",
    "apply_mixing",
    "cfg_rescale",
    "chain_rule_nll",
    "convert_prediction",
    "ddim_invert",
    "ddim_sample",
    "ddim_step",
    "ddpm_loss",
    "ddpm_sample",
    "dpm_solver_pp_2m_sample",
    "dpm_solver_pp_3m_sample",
    "gibbs_sample",
    "given_stems_loss",
    "ground_style",
    "inpaint_sample",
    "likelihood_gain",
    "masked_diffusion_loss",
    "msdm_dirac_separate",
    "msdm_gaussian_separate",
    "nats_per_frame",
    "prediction_from",
    "project_to_mixture",
    "random_given_mask",
    "repaint_moves",
    "rescale_zero_terminal_snr",
    "timesteps",
    "unmask_sample",
    "x0_and_eps",
]

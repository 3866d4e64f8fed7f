"""``separate``: stems from a mixture with the MSG-LD model.

- ``cfg``: MSG-LD separation (Karchkhadze et al., section II-B): DDIM on the joint stem latents
  conditioned on the mixture latent, classifier-free guidance ``pred = w pred_c + (1 - w) pred_u``
  (Ho & Salimans 2021 eq. 6) with ``w = --guidance`` (MSG-LD separates with w = 1..2).
- ``dirac`` / ``gaussian``: MSDM's posterior samplers (Mariani et al. 2024, eq. 10-12 and 8-9) in
  DDIM form (stemforge-samplers), with the mixture constraint taken in latent space as the sum of
  the stem latents equal to the mixture latent (a documented approximation: the mel VAE is not
  linear). Their prior is the same guided model, so ``--guidance 0`` is MSDM's unconditional prior.

A pipeline's recorded conventions (:class:`~stemforge.pipelines.sampling.SamplerDefaults`) choose
the unconditional branch (MSG-LD: an all-zero mixture latent) and the DDIM grid.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from stemforge.pipelines.loading import AudioModel
from stemforge.pipelines.sampling import (
    Generators,
    Progress,
    SamplingOptions,
    ddim_spacing,
    guided,
    sample_model,
)

Method = Literal["cfg", "dirac", "gaussian"]


def separate_chunk(
    model: AudioModel,
    mix_latent: Tensor,
    x_T: Tensor,
    *,
    method: Method,
    guidance: float,
    options: SamplingOptions,
    generator: Generators,
    progress: Progress | None = None,
) -> Tensor:
    """Stem latents (n, S, C, T, F) of mixture latents ``mix_latent`` (n, C, T, F)."""
    from stemforge.samplers import msdm_dirac_separate, msdm_gaussian_separate

    cond = {"mix_latent": mix_latent}
    if method == "cfg":
        return sample_model(
            model, x_T, options, cond=cond, guidance=guidance, generator=generator, progress=progress
        )
    options.require_ddim(f"--method {method}")
    run = msdm_dirac_separate if method == "dirac" else msdm_gaussian_separate
    return run(
        guided(model, guidance, cond, x_T),
        mix_latent,
        x_T,
        model.schedule,
        num_steps=options.steps,
        eta=options.eta,
        cond=cond,
        prediction=model.prediction,
        generator=generator,
        progress=progress,  # type: ignore[arg-type]
        **ddim_spacing(model),
    )

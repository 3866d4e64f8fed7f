"""``generate``: total generation, all stems from noise (MSG-LD section II-B with w = 0: the
mixture conditioning is replaced by the model's null conditioning, one unconditional branch)."""

from __future__ import annotations

import torch
from torch import Tensor

from stemforge.insert.audio_checkpoint import AudioModel
from stemforge.insert.sampling import Progress, SamplingOptions, sample_latents


def null_condition(model: AudioModel, like: Tensor) -> dict[str, Tensor]:
    """The dropped mixture condition for latents ``like`` (n, S, C, T, F)."""
    n = like.shape[0]
    return {
        "mix_latent": torch.zeros(n, *like.shape[2:], device=like.device),
        "drop": torch.ones(n, dtype=torch.bool, device=like.device),
    }


def generate_chunk(
    model: AudioModel,
    x_T: Tensor,
    *,
    options: SamplingOptions,
    generator: torch.Generator,
    progress: Progress | None = None,
) -> Tensor:
    """Stem latents (n, S, C, T, F) from noise ``x_T`` with w = 0."""
    return sample_latents(
        model.unet,
        x_T,
        model.schedule,
        options,
        cond=null_condition(model, x_T),
        prediction=model.prediction,
        generator=generator,
        progress=progress,
    )

"""Sampler choice and seeding shared by the audio commands.

``--sampler ddim`` (DDIM, eta from ``--eta``; MSG-LD samples with eta = 1), ``dpm`` (DPM-Solver++(2M),
deterministic, few steps) or ``ddpm`` (ancestral, posterior variance). Every chunk draws its starting
noise and its in-sampler noise from its own generators seeded by (seed, chunk index), the latter
through stemforge-samplers' one-generator-per-row option, so a result does not depend on
``--batch-size``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from stemforge.pipelines.errors import PipelineError

if TYPE_CHECKING:
    from stemforge.pipelines.loading import AudioModel

SamplerName = Literal["ddim", "dpm", "ddpm"]
SAMPLERS: tuple[str, ...] = ("ddim", "dpm", "ddpm")
Progress = Callable[[Iterable[int]], Iterable[int]]
#: stemforge-samplers' ``Generators``: one generator, or one per batch row (chunk).
Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass(frozen=True)
class SamplingOptions:
    steps: int = 50
    sampler: SamplerName = "ddim"
    eta: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise PipelineError(f"--steps {self.steps}: give at least 1 sampling step")
        if self.sampler not in SAMPLERS:
            raise PipelineError(f"--sampler {self.sampler}: choose one of {', '.join(SAMPLERS)}")
        if self.eta < 0:
            raise PipelineError(f"--eta {self.eta}: must be >= 0 (0 deterministic, 1 ancestral)")

    def check_schedule(self, num_train_steps: int) -> None:
        """A sampler cannot take more steps than the schedule the checkpoint was trained with."""
        if self.steps > num_train_steps:
            raise PipelineError(
                f"--steps {self.steps}: the checkpoint was trained with {num_train_steps} diffusion steps; "
                f"give at most {num_train_steps}"
            )

    def require_ddim(self, what: str) -> None:
        """Samplers whose update is written for DDIM only (MSDM, inpainting) refuse the others."""
        if self.sampler != "ddim":
            raise PipelineError(f"--sampler {self.sampler}: {what} runs on DDIM only; pass --sampler ddim")


def chunk_noise(shape: tuple[int, ...], seed: int, chunk_indices: list[int], device: torch.device) -> Tensor:
    """Standard normal x_T (n, *shape) with one generator per chunk, seeded by (seed, chunk)."""
    rows = []
    for index in chunk_indices:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
        rows.append(torch.randn(shape, generator=gen))
    return torch.stack(rows).to(device)


def step_generator(seed: int, chunk_indices: list[int]) -> list[torch.Generator]:
    """The generators of a batch's in-sampler noise (eta > 0), one per chunk (row), seeded by
    (seed, chunk)."""
    return [torch.Generator().manual_seed(seed * 1_000_003 + index + 7919) for index in chunk_indices]


def sample_latents(
    model: Callable[[Tensor, Tensor, dict[str, Tensor] | None], Tensor],
    x_T: Tensor,
    schedule: object,
    options: SamplingOptions,
    *,
    cond: dict[str, Tensor] | None,
    prediction: str,
    generator: Generators,
    denoised_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Run the chosen sampler from ``x_T``."""
    from stemforge.samplers import ddim_sample, ddpm_sample, dpm_solver_pp_2m_sample

    common = {
        "cond": cond,
        "prediction": prediction,
        "generator": generator,
        "denoised_fn": denoised_fn,
        "progress": progress,
    }
    if options.sampler == "ddim":
        return ddim_sample(model, x_T, schedule, num_steps=options.steps, eta=options.eta, **common)  # type: ignore[arg-type]
    if options.sampler == "dpm":
        return dpm_solver_pp_2m_sample(model, x_T, schedule, num_steps=options.steps, **common)  # type: ignore[arg-type]
    return ddpm_sample(model, x_T, schedule, num_steps=options.steps, **common)  # type: ignore[arg-type]


def sample_model(
    model: AudioModel,
    x_T: Tensor,
    options: SamplingOptions,
    *,
    cond: dict[str, Tensor] | None,
    generator: Generators,
    guidance: float | None = None,
    rescale: float = 0.0,
    denoised_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """``sample_latents`` with a checkpoint's U-Net, schedule and prediction type; with ``guidance``
    the U-Net runs under classifier-free guidance (scale ``guidance``, CFG rescale ``rescale``)."""
    net: Callable[[Tensor, Tensor, dict[str, Tensor] | None], Tensor] = model.unet
    if guidance is not None:
        from stemforge.samplers import ClassifierFreeGuidance

        net = ClassifierFreeGuidance(model.unet, guidance, rescale=rescale)
    return sample_latents(
        net,
        x_T,
        model.schedule,
        options,
        cond=cond,
        prediction=model.prediction,
        generator=generator,
        denoised_fn=denoised_fn,
        progress=progress,
    )

"""``arrange``: generate any subset of missing stems from the given ones by inpainting (MSG-LD
section II-D): at every step the given stems are replaced by their forward-noised latents
(RePaint eq. 8, stemforge-samplers ``inpaint_sample``), the model runs unconditionally (w = 0, as
MSG-LD's arrangement), and the result holds the given stems exactly. A checkpoint trained with a
stem-mask embedding also receives the mask."""

from __future__ import annotations

import torch
from torch import Tensor

from stemforge.insert.audio_checkpoint import AudioModel
from stemforge.insert.generate import null_condition
from stemforge.insert.sampling import Progress, SamplingOptions


def arrange_chunk(
    model: AudioModel,
    given: Tensor,
    stem_mask: Tensor,
    x_T: Tensor,
    *,
    options: SamplingOptions,
    generator: torch.Generator,
    progress: Progress | None = None,
) -> Tensor:
    """Stem latents (n, S, C, T, F): ``given`` where ``stem_mask`` (n, S) is True, generated elsewhere."""
    from stemforge.samplers import inpaint_sample

    options.require_ddim("arrangement by inpainting")
    cond = null_condition(model, x_T)
    if model.config.stem_mask:
        cond["stem_mask"] = stem_mask
    return inpaint_sample(
        model.unet,
        x_T,
        model.schedule,
        given,
        stem_mask,
        num_steps=options.steps,
        eta=options.eta,
        cond=cond,
        prediction=model.prediction,
        generator=generator,
        progress=progress,  # type: ignore[arg-type]
    )

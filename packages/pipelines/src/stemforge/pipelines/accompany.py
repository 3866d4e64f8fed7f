"""``accompany``: a stem for a mixture in a reference timbre (Pasini, Grachten & Lattner 2024).

With an ``accompaniment`` checkpoint (mix -> stem): DDIM conditioned on the mixture latent with
classifier-free guidance ``w`` and CFG rescale ``phi`` (Lin et al. 2023 eq. 15-16, as Pasini et
al.), and style grounding of the clean estimate toward the reference latent's per-channel time
statistics with strength ``lambda`` (DESIGN.md's formula, stemforge-samplers ``StyleGrounding``).
A checkpoint trained with a style input also gets the reference's style vector (its
``StyleEncoder`` of the reference latent) as a condition, guided together with the mixture (the
null branch drops both); without a reference it uses its learned null style.

With a joint ``msgld`` checkpoint the mixture enters as a constraint instead: at every step the
clean estimate of the given stems is projected onto ``sum(given stems) = mixture latent`` (the
residual shared equally among them, the orthogonal projection onto that affine set) and the
inserted stem's clean estimate is style-grounded. The full mixture is unknown, so the mixture
conditioning (and with it ``w`` and ``phi``) is not used with such a checkpoint.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stemforge.pipelines.generate import null_condition
from stemforge.pipelines.loading import AudioModel
from stemforge.pipelines.sampling import Progress, SamplingOptions, sample_model
from stemforge.samplers import project_to_mixture


def accompany_chunk(
    model: AudioModel,
    stem: str,
    mix_latent: Tensor,
    x_T: Tensor,
    *,
    style_latent: Tensor | None,
    style_strength: float,
    style: Tensor | None = None,
    guidance: float,
    rescale: float,
    options: SamplingOptions,
    generator: torch.Generator,
    progress: Progress | None = None,
) -> Tensor:
    """Latents (n, 1, C, T, F) of ``stem`` for mixture latents (n, C, T, F); ``style_latent``
    (1, C, T_ref, F) or None; ``style`` (1, D) the style vector for a style-conditioned model."""
    from stemforge.samplers import StyleGrounding

    target = 0 if model.mode == "accompaniment" else model.check_stem(stem)
    grounding = None
    if style_latent is not None and style_strength > 0:
        reference = style_latent.reshape(1, 1, *style_latent.shape[1:])
        grounding = StyleGrounding(reference, style_strength, time_dim=-2)

    if model.mode == "accompaniment":

        def ground(x0: Tensor, t: Tensor) -> Tensor:
            return grounding(x0, t) if grounding is not None else x0

        cond = {"mix_latent": mix_latent}
        if style is not None:
            cond["style"] = style.to(mix_latent.device).expand(mix_latent.shape[0], -1)
        return sample_model(
            model,
            x_T,
            options,
            cond=cond,
            guidance=guidance,
            rescale=rescale,
            generator=generator,
            denoised_fn=ground,
            progress=progress,
        )

    def constrain(x0: Tensor, t: Tensor) -> Tensor:
        x0 = project_to_mixture(x0, mix_latent, target)
        if grounding is not None:
            x0 = x0.clone()
            x0[:, target : target + 1] = grounding(x0[:, target : target + 1], t)
        return x0

    stems = sample_model(
        model,
        x_T,
        options,
        cond=null_condition(model, x_T),
        generator=generator,
        denoised_fn=constrain,
        progress=progress,
    )
    return stems[:, target : target + 1]

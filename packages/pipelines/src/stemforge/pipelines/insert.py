"""``audio``: insert a stem into a mixture that lacks it (Subtractive Training, Villa-Renteria et al.).

Three kinds of checkpoint:

- a ``subtractive`` model (Subtractive Training proper: trained on (mix minus stem, stem,
  instruction) triplets): DDIM conditioned on the given mixture latent, the instruction (MiniLM
  token states and pooled vector) and the given-stems mask naming the missing stem, with
  classifier-free guidance ``w`` over all of them at once (``pred = w pred(mix, text) + (1 - w)
  pred(null)``, one batched call per step); without an instruction the model's learned null text
  is used;
- an ``accompaniment`` model (trained on (mix minus stem) -> stem pairs, the Subtractive Training
  set-up): DDIM conditioned on the given mixture latent with classifier-free guidance ``w``, and
  on the instruction when the model has a text encoder input;
- a joint ``msgld`` model (all stems): MSDM's Dirac posterior (Mariani et al. 2024, eq. 10-12,
  stemforge-samplers) with mixing weights 1 for every given stem and 0 for the inserted one, so
  the other stems are constrained to sum to the given mixture (in latent space) and the inserted
  stem is free under the joint prior: it is generated to fit them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stemforge.pipelines.generate import null_condition
from stemforge.pipelines.loading import AudioModel
from stemforge.pipelines.sampling import Progress, SamplingOptions, sample_model


def insert_chunk(
    model: AudioModel,
    stem: str,
    mix_latent: Tensor,
    x_T: Tensor,
    *,
    guidance: float,
    options: SamplingOptions,
    generator: torch.Generator,
    text: dict[str, Tensor] | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Latents (n, 1, C, T, F) of ``stem`` inserted into mixture latents ``mix_latent`` (n, C, T, F).

    ``x_T`` is (n, S, C, T, F) for a joint model and (n, 1, C, T, F) for a one-stem model;
    ``text`` holds the instruction's (1, ...) ``text`` / ``text_mask`` / ``text_pooled``.
    """
    from stemforge.samplers import msdm_dirac_separate

    if model.mode == "subtractive":
        n = mix_latent.shape[0]
        given = torch.ones(n, len(model.stems), dtype=torch.bool, device=mix_latent.device)
        given[:, model.check_stem(stem)] = False
        cond = {"mix_latent": mix_latent, "stem_mask": given}
        for key, value in (text or {}).items():
            cond[key] = value.to(mix_latent.device).expand(n, *value.shape[1:])
        return sample_model(
            model, x_T, options, cond=cond, guidance=guidance, generator=generator, progress=progress
        )
    if model.mode == "accompaniment":
        cond = {"mix_latent": mix_latent, **(text or {})}
        return sample_model(
            model, x_T, options, cond=cond, guidance=guidance, generator=generator, progress=progress
        )
    options.require_ddim("insertion with a joint model (MSDM Dirac)")
    target = model.check_stem(stem)
    weights = torch.ones(len(model.stems))
    weights[target] = 0.0
    constrained = next(i for i in range(len(model.stems)) if i != target)
    stems = msdm_dirac_separate(
        model.unet,
        mix_latent,
        x_T,
        model.schedule,
        num_steps=options.steps,
        eta=options.eta,
        constrained_stem=constrained,
        mixing=weights,
        cond=null_condition(model, x_T),
        prediction=model.prediction,
        generator=generator,
        progress=progress,  # type: ignore[arg-type]
    )
    return stems[:, target : target + 1]

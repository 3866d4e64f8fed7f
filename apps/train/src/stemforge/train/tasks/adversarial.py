"""Simultaneous GAN training of a codec generator and its discriminators with one optimizer.

HiFi-GAN (Kong, Kim and Bae 2020, eqs. 1-6) alternates a discriminator update (LSGAN eq. 1 on real vs.
generated audio) and a generator update (LSGAN eq. 2 + feature matching eq. 4 with weight 2 + mel L1
eq. 5 with weight 45, eq. 6 for the sum over sub-discriminators). A DeepSpeed engine drives one
optimizer, so the two updates are made simultaneously: generator and discriminators are one module,
AdamW has one parameter group for each (own learning rate and betas), and one backward pass of

    L = L_D(D; x, stopgrad(G(s))) + L_G(G; D with detached parameters) + reconstruction(G)

gives each group exactly its own gradient. The discriminator loss sees the generated audio detached,
so it sends nothing to G; the generator's adversarial and feature-matching terms call the
discriminators through ``torch.func.functional_call`` with ``{name: p.detach()}``, so they send
nothing to D; the real feature maps in the feature-matching term are detached as in the reference
implementation. Both groups are then stepped from the same discriminator state (the simultaneous
gradient update of Mescheder et al. 2017, "The Numerics of GANs"), instead of the alternating one.
The waveform autoencoder of Pasini et al. 2024 uses the same discriminators as an extra term on top
of its spectral losses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

ReconstructionLoss = Callable[[Tensor, Tensor], Mapping[str, Tensor]]
"""``(fake, real) -> {"loss": ..., other logged terms}``, the generator's reconstruction objective."""


def _discriminate(
    discriminators: Sequence[nn.Module], wave: Tensor, detach_parameters: bool
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Scores and feature maps of every sub-discriminator, concatenated over the discriminators."""
    scores: list[Tensor] = []
    features: list[list[Tensor]] = []
    for discriminator in discriminators:
        if detach_parameters:
            frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
            s, f = functional_call(discriminator, frozen, (wave,))
        else:
            s, f = discriminator(wave)
        scores += s
        features += f
    return scores, features


def simultaneous_gan_losses(
    discriminators: Sequence[nn.Module], real: Tensor, fake: Tensor
) -> dict[str, Tensor]:
    """``{"d_loss", "g_adv", "fm"}`` of one simultaneous update; ``real`` and ``fake`` are (B, N) audio.

    ``d_loss`` (eq. 1) reaches only the discriminators' parameters; ``g_adv`` (eq. 2) and ``fm``
    (eq. 4, weight 2 included) reach only the generator's (through ``fake``).
    """
    from stemforge.codec import (
        discriminator_adversarial_loss,
        feature_matching_loss,
        generator_adversarial_loss,
    )

    batch = real.shape[0]
    # Real and detached fake audio in one discriminator pass (no batch statistics in D: exact).
    scores, features = _discriminate(discriminators, torch.cat([real, fake.detach()]), False)
    real_scores = [s[:batch] for s in scores]
    fake_scores = [s[batch:] for s in scores]
    real_features = [[f[:batch] for f in maps] for maps in features]
    d_loss = discriminator_adversarial_loss(real_scores, fake_scores)
    g_scores, g_features = _discriminate(discriminators, fake, True)
    g_adv = generator_adversarial_loss(g_scores)
    fm = feature_matching_loss(real_features, g_features)  # detaches the real maps
    return {"d_loss": d_loss, "g_adv": g_adv, "fm": fm}


class AdversarialCodec(nn.Module):
    """A codec generator and its discriminators in one module, for one engine and one AdamW.

    ``forward(inputs, real, adversarial)`` runs the generator on ``inputs`` (a log-mel for the vocoder,
    the waveform for the autoencoder), crops output and ``real`` to the same length and returns the
    terms of the combined loss under ``"loss"``: reconstruction, plus, when ``adversarial``, the
    discriminator loss and ``adversarial_weight`` x (generator adversarial + feature matching).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminators: Sequence[nn.Module],
        reconstruction: ReconstructionLoss,
        adversarial_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not discriminators:
            raise ValueError("AdversarialCodec needs at least one discriminator")
        self.generator = generator
        self.discriminators = nn.ModuleList(discriminators)
        self.reconstruction = reconstruction
        self.adversarial_weight = adversarial_weight

    def forward(self, inputs: Tensor, real: Tensor, adversarial: bool = True) -> dict[str, Tensor]:
        fake = self.generator(inputs)
        n = min(fake.shape[-1], real.shape[-1])
        fake, real = fake[..., :n], real[..., :n]
        terms = dict(self.reconstruction(fake, real))
        if not adversarial:
            return terms
        gan = simultaneous_gan_losses(list(self.discriminators), real, fake)
        terms["loss"] = terms["loss"] + gan["d_loss"] + self.adversarial_weight * (gan["g_adv"] + gan["fm"])
        return {**terms, **gan}

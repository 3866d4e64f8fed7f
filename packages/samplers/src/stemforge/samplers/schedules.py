"""Discrete-time noise schedules of the variance-preserving diffusion and their continuous views.

The forward process is DDPM's (Ho et al. 2020, eq. 4): ``x_t = alpha_t x_0 + sigma_t eps`` with
``alpha_t^2 = prod_{s<=t} (1 - beta_s)`` ("alphas_cumprod") and ``sigma_t^2 = 1 - alpha_t^2``.

Schedules:

- ``"sqrt_linear"``: Latent Diffusion's and MSG-LD's "linear" schedule, betas linear in sqrt(beta):
  ``beta_i = (sqrt(b0) + i / (N-1) (sqrt(b1) - sqrt(b0)))^2``; MSG-LD uses 0.0015 -> 0.0195, N = 1000.
- ``"linear"``: DDPM's betas linear in beta (Ho et al. 2020, section 4), 1e-4 -> 0.02.
- ``"cosine"``: Nichol & Dhariwal 2021, eq. 17: ``alpha_bar(t) = f(t) / f(0)``,
  ``f(t) = cos(((t / N) + s) / (1 + s) * pi / 2)^2``, betas clipped at 0.999.
- zero-terminal-SNR rescaling (Lin et al. 2023, "Common diffusion noise schedules and sample steps
  are flawed", Algorithm 1): ``sqrt(alpha_bar)`` is shifted so the last step is 0 and scaled so the
  first step is unchanged. It needs ``v`` or ``x0`` prediction (an epsilon model cannot recover
  ``x_0`` from pure noise).

Continuous views: for a (possibly fractional) timestep ``t`` in ``[0, N-1]``, ``alpha_bar(t)`` is
interpolated linearly between integer steps (well defined also at zero terminal SNR), and
``alpha(t) = sqrt(alpha_bar)``, ``sigma(t) = sqrt(1 - alpha_bar)``, ``log_snr(t) =
log(alpha^2 / sigma^2)`` (Kingma et al. 2021) and the variance-exploding noise level
``ve_sigma(t) = sigma / alpha`` (Karras et al. 2022; Song et al. 2021, DDIM eq. 14).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

ScheduleKind = Literal["sqrt_linear", "linear", "cosine"]

_PRESETS: dict[str, dict[str, Any]] = {
    "msgld": {"kind": "sqrt_linear", "num_steps": 1000, "beta_start": 0.0015, "beta_end": 0.0195},
    "msgld-zero-snr": {
        "kind": "sqrt_linear",
        "num_steps": 1000,
        "beta_start": 0.0015,
        "beta_end": 0.0195,
        "zero_terminal_snr": True,
    },
    "ddpm-linear": {"kind": "linear", "num_steps": 1000, "beta_start": 1e-4, "beta_end": 0.02},
    "cosine": {"kind": "cosine", "num_steps": 1000},
}


@dataclass(frozen=True)
class ScheduleConfig:
    """Configuration of a discrete noise schedule (see the module docstring for the formulas)."""

    kind: ScheduleKind = "sqrt_linear"
    num_steps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    cosine_s: float = 0.008
    zero_terminal_snr: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("sqrt_linear", "linear", "cosine"):
            raise ValueError(
                f"ScheduleConfig.kind={self.kind!r} is unknown; use 'sqrt_linear', 'linear' or 'cosine'"
            )
        if self.num_steps < 2:
            raise ValueError(f"ScheduleConfig.num_steps={self.num_steps} must be at least 2")
        if self.kind != "cosine" and not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError(
                f"ScheduleConfig betas {self.beta_start} -> {self.beta_end} must satisfy "
                "0 < beta_start <= beta_end < 1"
            )

    @classmethod
    def from_name(cls, name: str) -> ScheduleConfig:
        """Presets: ``msgld`` (MSG-LD / LDM), ``msgld-zero-snr``, ``ddpm-linear``, ``cosine``."""
        if name not in _PRESETS:
            raise ValueError(f"unknown schedule preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(**_PRESETS[name])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _betas(config: ScheduleConfig) -> Tensor:
    n = config.num_steps
    if config.kind == "sqrt_linear":
        root = torch.linspace(
            math.sqrt(config.beta_start), math.sqrt(config.beta_end), n, dtype=torch.float64
        )
        return root**2
    if config.kind == "linear":
        return torch.linspace(config.beta_start, config.beta_end, n, dtype=torch.float64)
    steps = torch.arange(n + 1, dtype=torch.float64)
    f = torch.cos((steps / n + config.cosine_s) / (1 + config.cosine_s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Lin et al. 2023, Algorithm 1: rescale betas so that the last step has exactly zero SNR."""
    alpha_bar_sqrt = torch.cumprod(1 - betas.double(), 0).sqrt()
    first, last = alpha_bar_sqrt[0].clone(), alpha_bar_sqrt[-1].clone()
    alpha_bar_sqrt = (alpha_bar_sqrt - last) * first / (first - last)
    alpha_bar = alpha_bar_sqrt**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


class NoiseSchedule:
    """A discrete VP schedule with ``num_steps`` training timesteps ``0 .. N-1`` (float64 tables)."""

    def __init__(self, config: ScheduleConfig | None = None) -> None:
        self.config = config or ScheduleConfig()
        betas = _betas(self.config)
        if self.config.zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)

    @classmethod
    def from_config(cls, config: ScheduleConfig | dict[str, Any]) -> NoiseSchedule:
        return cls(config if isinstance(config, ScheduleConfig) else ScheduleConfig(**config))

    @classmethod
    def from_name(cls, name: str) -> NoiseSchedule:
        return cls(ScheduleConfig.from_name(name))

    def to_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """``alpha_t^2`` at (fractional) timesteps ``t`` in ``[0, N-1]``, float64; ``t = -1`` gives 1."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if bool(((t < -1) | (t > self.num_steps - 1)).any()):
            raise ValueError(f"timesteps must lie in [-1, {self.num_steps - 1}], got {t.min()}..{t.max()}")
        table = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])
        position = t + 1
        low = position.floor().long().clamp(max=self.num_steps - 1)
        frac = position - low
        return table[low] * (1 - frac) + table[(low + 1).clamp(max=self.num_steps)] * frac

    def alpha(self, t: Tensor | float) -> Tensor:
        return self.alpha_bar(t).sqrt()

    def sigma(self, t: Tensor | float) -> Tensor:
        return (1 - self.alpha_bar(t)).clamp(min=0).sqrt()

    def log_snr(self, t: Tensor | float) -> Tensor:
        """``log(alpha^2 / sigma^2)``; ``-inf`` at zero terminal SNR, ``+inf`` at ``t = -1``."""
        alpha_bar = self.alpha_bar(t)
        return torch.log(alpha_bar) - torch.log1p(-alpha_bar)

    def ve_sigma(self, t: Tensor | float) -> Tensor:
        """The equivalent variance-exploding noise level ``sigma / alpha`` (DDIM eq. 14)."""
        return self.sigma(t) / self.alpha(t)

    def timestep_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr` on the interpolated table (fractional timesteps)."""
        alpha_bar = torch.sigmoid(torch.as_tensor(log_snr, dtype=torch.float64))
        table = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])
        # the table decreases; search it reversed
        rev = table.flip(0)
        idx = torch.searchsorted(rev, alpha_bar.clamp(rev[0], rev[-1])).clamp(1, len(rev) - 1)
        lo, hi = rev[idx - 1], rev[idx]
        frac = ((alpha_bar - lo) / (hi - lo).clamp(min=1e-300)).clamp(0, 1)
        position_rev = idx - 1 + frac
        return (len(rev) - 1 - position_rev) - 1

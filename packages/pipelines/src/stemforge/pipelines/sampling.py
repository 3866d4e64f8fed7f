"""Sampler choice and seeding shared by the audio commands.

``--sampler ddim`` (DDIM, eta from ``--eta``; MSG-LD samples with eta = 1), ``dpm`` (DPM-Solver++(2M),
deterministic, few steps), ``dpm3`` (DPM-Solver++(3M), the same with a third-order multistep update) or
``ddpm`` (ancestral, posterior variance). Every chunk draws its starting
noise and its in-sampler noise from its own generators seeded by (seed, chunk index), the latter
through stemforge-samplers' one-generator-per-row option, so a result does not depend on
``--batch-size``.

A pipeline may record sampler conventions (:class:`SamplerDefaults`, ``pipeline.json``
``"sampler_defaults"``; an imported MSG-LD checkpoint records the original's). Without them
(``None``, every folder written before they existed) everything is as described above.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from stemforge.pipelines.errors import PipelineError

if TYPE_CHECKING:
    from stemforge.pipelines.loading import AudioModel

SamplerName = Literal["ddim", "dpm", "dpm3", "ddpm"]
SAMPLERS: tuple[str, ...] = ("ddim", "dpm", "dpm3", "ddpm")
Progress = Callable[[Iterable[int]], Iterable[int]]
#: stemforge-samplers' ``Generators``: one generator, or one per batch row (chunk).
Generators = torch.Generator | Sequence[torch.Generator] | None


#: ``SamplerDefaults.ddim_timesteps``: stemforge-samplers' default grid, or the original MSG-LD's.
DDIM_TIMESTEPS: tuple[str, ...] = ("stemforge", "msgld")
#: ``SamplerDefaults.unconditional``: how the unconditional branch is fed.
UNCONDITIONAL: tuple[str, ...] = ("drop", "zero_mix")
#: The separation guidance scale w without recorded defaults (``--guidance``).
DEFAULT_SEPARATION_GUIDANCE = 2.0
#: The DDIM eta without recorded defaults (``--eta``).
DEFAULT_ETA = 1.0
#: Sampling steps without recorded defaults (``--steps``).
DEFAULT_STEPS = 50
#: The separation methods of ``separate`` (CFG, MSDM's Dirac and Gaussian posteriors).
SEPARATION_METHODS: tuple[str, ...] = ("cfg", "dirac", "gaussian")


@dataclass(frozen=True)
class SamplerDefaults:
    """Sampler conventions a pipeline records (``pipeline.json`` ``"sampler_defaults"``).

    - ``ddim_timesteps``: ``"stemforge"`` (stemforge-samplers' defaults: ``linspace`` grid, the last
      step to the clean sample) or ``"msgld"``: the original's ``make_ddim_timesteps("uniform")``
      grid (:func:`~stemforge.pipelines.msgld.msgld_ddim_timesteps`, descending; S not dividing N
      gives more steps) whose last step stops at ``alphas_cumprod[0]`` (``ddim_sample``'s
      ``final_timestep=0``), for DDIM sampling and for inpainting (arrangement, continued
      generation) alike. MSDM's Dirac / Gaussian separation, which the original code does not
      have, takes ``spacing="leading"``: the same grid when S divides N, ending at the clean sample.
    - ``eta``: the DDIM eta when none is given (MSG-LD: 1); ``task_eta``: the eta of single tasks
      (``{"generate": 0.0, "arrange": 0.0}``, keys of :data:`ETA_TASKS`) where it differs, recorded
      with the measurement that chose it (a model whose unconditional samples lose level with eta
      1 but whose separation needs it).
    - ``unconditional``: ``"drop"`` (the U-Net's ``drop`` flag: its null conditioning) or
      ``"zero_mix"`` (an all-zero mixture latent and nothing dropped, the original's input).
    - ``separate_guidance``: w of ``separate`` when none is given (MSG-LD eval config: 1);
      ``generate_guidance`` / ``arrange_guidance``: w of total generation and arrangement, which
      run the unconditional model (0, the only value they support).
    - ``separate_steps``: the sampling steps of ``separate`` per method (``{"cfg": 10}``) when none
      are given, recorded with the measurement that chose them (the fewest steps whose separation
      is within 0.2 dB SI-SDR of DDIM with 200 steps on held-out audio); a method not listed takes
      :data:`DEFAULT_STEPS`.
    """

    ddim_timesteps: str = "stemforge"
    eta: float = DEFAULT_ETA
    unconditional: str = "drop"
    separate_guidance: float = DEFAULT_SEPARATION_GUIDANCE
    generate_guidance: float = 0.0
    arrange_guidance: float = 0.0
    separate_steps: Mapping[str, int] | None = None
    task_eta: Mapping[str, float] | None = None

    def eta_for(self, task: str | None) -> float:
        """The DDIM eta of ``task`` (a key of :data:`ETA_TASKS`; None: the common one)."""
        return float((self.task_eta or {}).get(task or "", self.eta))

    def __post_init__(self) -> None:
        if self.ddim_timesteps not in DDIM_TIMESTEPS:
            raise PipelineError(
                f"sampler_defaults.ddim_timesteps {self.ddim_timesteps!r}: choose one of {', '.join(DDIM_TIMESTEPS)}"
            )
        if self.unconditional not in UNCONDITIONAL:
            raise PipelineError(
                f"sampler_defaults.unconditional {self.unconditional!r}: choose one of {', '.join(UNCONDITIONAL)}"
            )
        if not self.eta >= 0:
            raise PipelineError(f"sampler_defaults.eta {self.eta}: must be >= 0")
        for task, value in (self.task_eta or {}).items():
            if task not in ETA_TASKS:
                raise PipelineError(
                    f"sampler_defaults.task_eta.{task}: unknown task; use {', '.join(ETA_TASKS)}"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise PipelineError(f"sampler_defaults.task_eta.{task} {value!r}: give a number >= 0")
        if not self.separate_guidance >= 0:
            raise PipelineError(f"sampler_defaults.guidance.separate {self.separate_guidance}: must be >= 0")
        for method, steps in (self.separate_steps or {}).items():
            if method not in SEPARATION_METHODS:
                raise PipelineError(
                    f"sampler_defaults.steps.separate.{method}: unknown method; use {', '.join(SEPARATION_METHODS)}"
                )
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise PipelineError(
                    f"sampler_defaults.steps.separate.{method} {steps!r}: give a whole number >= 1"
                )
        for task, value in (("generate", self.generate_guidance), ("arrange", self.arrange_guidance)):
            if value != 0:
                raise PipelineError(
                    f"sampler_defaults.guidance.{task} {value}: {task} runs the unconditional model (w = 0) only"
                )

    @classmethod
    def msgld(cls, separate_guidance: float = 1.0) -> SamplerDefaults:
        """The original MSG-LD's conventions (``generate_sample``: DDIM, eta 1, zero mixture for
        the unconditional branch; w of the eval config for separation, 0 for the other tasks)."""
        return cls("msgld", 1.0, "zero_mix", float(separate_guidance), 0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ddim_timesteps": self.ddim_timesteps,
            "eta": self.eta,
            "unconditional": self.unconditional,
            "guidance": {
                "separate": self.separate_guidance,
                "generate": self.generate_guidance,
                "arrange": self.arrange_guidance,
            },
        }
        if self.separate_steps:
            data["steps"] = {"separate": dict(self.separate_steps)}
        if self.task_eta:
            data["task_eta"] = {task: float(value) for task, value in self.task_eta.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "pipeline.json") -> SamplerDefaults:
        """Read :meth:`to_dict`'s form; unknown keys are refused (written by a newer version)."""
        if not isinstance(data, Mapping):
            raise PipelineError(f"{source}: sampler_defaults must be a JSON object")
        known = {"ddim_timesteps", "eta", "unconditional", "guidance", "steps", "task_eta"}
        guidance, steps = data.get("guidance", {}), data.get("steps", {})
        task_eta = data.get("task_eta", {})
        for name, value in (("guidance", guidance), ("steps", steps), ("task_eta", task_eta)):
            if not isinstance(value, Mapping):
                raise PipelineError(f"{source}: sampler_defaults.{name} must be a JSON object")
        unknown = (
            sorted(set(data) - known)
            + sorted(f"guidance.{k}" for k in set(guidance) - set(_TASKS))
            + sorted(f"steps.{k}" for k in set(steps) - {"separate"})
        )
        separate_steps = steps.get("separate")
        if separate_steps is not None and not isinstance(separate_steps, Mapping):
            raise PipelineError(f"{source}: sampler_defaults.steps.separate must be a JSON object by method")
        if unknown:
            raise PipelineError(
                f"{source}: sampler_defaults has unknown entries {unknown}; upgrade stemforge-pipelines"
            )
        try:
            return cls(
                ddim_timesteps=str(data.get("ddim_timesteps", "stemforge")),
                eta=float(data.get("eta", DEFAULT_ETA)),
                unconditional=str(data.get("unconditional", "drop")),
                separate_guidance=float(guidance.get("separate", DEFAULT_SEPARATION_GUIDANCE)),
                generate_guidance=float(guidance.get("generate", 0.0)),
                arrange_guidance=float(guidance.get("arrange", 0.0)),
                separate_steps=None if separate_steps is None else dict(separate_steps),
                task_eta=dict(task_eta) or None,
            )
        except PipelineError as err:
            raise PipelineError(f"{source}: {err}") from err
        except (TypeError, ValueError) as err:
            raise PipelineError(
                f"{source}: sampler_defaults holds a value of the wrong type ({err})"
            ) from err


_TASKS = ("separate", "generate", "arrange")
#: The tasks ``SamplerDefaults.task_eta`` may name (``insert``: a joint model's Dirac insertion).
ETA_TASKS: tuple[str, ...] = ("separate", "generate", "arrange", "insert", "accompany")


def defaults_of(model: object) -> SamplerDefaults | None:
    """The conventions a pipeline records, or None (today's defaults)."""
    return getattr(model, "sampler_defaults", None)


def default_eta(model: object, task: str | None = None) -> float:
    """The DDIM eta of ``task`` when none is given: the pipeline's recorded one for the task, else
    its common one, else :data:`DEFAULT_ETA`."""
    defaults = defaults_of(model)
    return DEFAULT_ETA if defaults is None else defaults.eta_for(task)


def default_steps(model: object, task: str, method: str | None = None) -> int:
    """The sampling steps of ``task`` (and separation ``method``) when none are given: the
    pipeline's recorded ones, else :data:`DEFAULT_STEPS`."""
    defaults = defaults_of(model)
    if task == "separate" and defaults is not None and defaults.separate_steps:
        return defaults.separate_steps.get(method or "cfg", DEFAULT_STEPS)
    return DEFAULT_STEPS


def default_separation_guidance(model: object) -> float:
    defaults = defaults_of(model)
    return DEFAULT_SEPARATION_GUIDANCE if defaults is None else defaults.separate_guidance


def ddim_grid(model: object, num_steps: int) -> tuple[list[float], float] | None:
    """The explicit DDIM grid (descending) and final timestep that ``model``'s recorded conventions
    ask for, or None for stemforge-samplers' defaults."""
    defaults = defaults_of(model)
    if defaults is None or defaults.ddim_timesteps == "stemforge":
        return None
    from stemforge.pipelines.msgld import msgld_ddim_timesteps

    num_train = int(model.schedule.num_steps)  # type: ignore[attr-defined]
    if not 1 <= num_steps <= num_train:
        raise PipelineError(f"--steps {num_steps}: give between 1 and {num_train} steps")
    grid = msgld_ddim_timesteps(num_steps, num_train).flip(0).tolist()
    return [float(t) for t in grid], 0.0


def ddim_spacing(model: object) -> dict[str, Any]:
    """``spacing=`` for the DDIM-form samplers without an explicit grid option (MSDM separation):
    empty (their default) unless the recorded conventions ask for the original's grid."""
    defaults = defaults_of(model)
    if defaults is None or defaults.ddim_timesteps == "stemforge":
        return {}
    return {"spacing": "leading"}


def unconditional(model: object, like: Tensor) -> dict[str, Tensor]:
    """The unconditional (null) mixture condition for stem latents ``like`` (n, S, C, T, F):
    the ``drop`` flag on a zero mixture, or under ``unconditional="zero_mix"`` the zero mixture
    alone (nothing dropped)."""
    defaults = defaults_of(model)
    n = like.shape[0]
    drop = defaults is None or defaults.unconditional == "drop"
    return {
        "mix_latent": torch.zeros(n, *like.shape[2:], device=like.device),
        "drop": torch.full((n,), drop, dtype=torch.bool, device=like.device),
    }


def guided(
    model: AudioModel, guidance: float, cond: dict[str, Tensor], like: Tensor, rescale: float = 0.0
) -> Callable[[Tensor, Tensor, dict[str, Tensor] | None], Tensor]:
    """``model.unet`` under classifier-free guidance with scale ``guidance`` for the mixture
    condition ``cond`` (``{"mix_latent": (n, C, T, F)}``); the unconditional branch as the recorded
    conventions say (default: the condition with ``drop`` set)."""
    from stemforge.samplers import ClassifierFreeGuidance

    uncond = None
    defaults = defaults_of(model)
    if defaults is not None and defaults.unconditional == "zero_mix" and "mix_latent" in cond:
        null = unconditional(model, like)
        uncond = {key: null.get(key, value) for key, value in cond.items()}
        uncond["drop"] = null["drop"]
    return ClassifierFreeGuidance(model.unet, guidance, rescale=rescale, uncond=uncond)


@dataclass(frozen=True)
class SamplingOptions:
    steps: int = DEFAULT_STEPS
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
    ddim: tuple[Sequence[float], float] | None = None,
) -> Tensor:
    """Run the chosen sampler from ``x_T``. ``ddim``: an explicit DDIM grid (descending) and final
    timestep (:func:`ddim_grid`), for ``sampler="ddim"`` only."""
    from stemforge.samplers import ddim_sample, ddpm_sample, dpm_solver_pp_2m_sample, dpm_solver_pp_3m_sample

    common: dict[str, Any] = {
        "cond": cond,
        "prediction": prediction,
        "generator": generator,
        "denoised_fn": denoised_fn,
        "progress": progress,
    }
    if options.sampler == "ddim":
        if ddim is not None:
            grid, final = ddim
            common.update(grid=grid, final_timestep=final)
        return ddim_sample(model, x_T, schedule, num_steps=options.steps, eta=options.eta, **common)  # type: ignore[arg-type]
    if options.sampler == "dpm":
        return dpm_solver_pp_2m_sample(model, x_T, schedule, num_steps=options.steps, **common)  # type: ignore[arg-type]
    if options.sampler == "dpm3":
        return dpm_solver_pp_3m_sample(model, x_T, schedule, num_steps=options.steps, **common)  # type: ignore[arg-type]
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
    the U-Net runs under classifier-free guidance (scale ``guidance``, CFG rescale ``rescale``).
    The checkpoint's recorded conventions (:class:`SamplerDefaults`) choose the DDIM grid and the
    unconditional branch."""
    net: Callable[[Tensor, Tensor, dict[str, Tensor] | None], Tensor] = model.unet
    if guidance is not None:
        net = guided(model, guidance, cond or {}, x_T, rescale)
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
        ddim=ddim_grid(model, options.steps) if options.sampler == "ddim" else None,
    )

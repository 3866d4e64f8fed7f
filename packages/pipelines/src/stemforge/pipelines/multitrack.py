"""``MultiTrackPipeline``: a codec, a 3D U-Net, its noise schedule and its stems, with the tasks of
MSG-LD, MSDM, Subtractive Training and Pasini et al. as tensor-in / tensor-out methods.

Every method takes waveforms as tensors with their sample rate (resampled to the model's rate and
back), runs audio of any length in chunks (crossfaded, or each continuing the previous one by
inpainting), checks the decoded audio (:func:`stemforge.codec.audio_problems`) and returns
waveforms at the input's rate and length::

    pipe = MultiTrackPipeline.from_pretrained("path/to/pipeline")
    stems = pipe.separate(mix, 16000, method="dirac", steps=50, seed=0)   # {"bass": (N,), ...}

Options common to every method: ``steps`` (default 50; ``separate``: the pipeline's recorded
steps for the method, else 50), ``sampler`` ("ddim", "dpm", "dpm3", "ddpm"), ``eta`` (default:
the pipeline's recorded value for the task, else its common one, else 1), ``seed``, ``chunk_seconds`` (default: the training
segment), ``overlap``, ``batch_size``, ``reporter`` (an object with ``start_chunks / chunks_done /
steps / note``, :mod:`stemforge.pipelines.progress`) and ``allow_degenerate``.

A pipeline may record sampler conventions (``sampler_defaults``,
:class:`~stemforge.pipelines.sampling.SamplerDefaults`; an imported MSG-LD checkpoint records the
original's DDIM grid, eta, zero-mixture unconditional branch and guidance scales); without them
the defaults above hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from stemforge.pipelines.accompany import accompany_chunk
from stemforge.pipelines.arrange import arrange_chunk
from stemforge.pipelines.chunked import (
    ChunkOptions,
    OutputChecks,
    decode,
    encode,
    plan_chunks,
    sample_in_chunks,
)
from stemforge.pipelines.errors import PipelineError
from stemforge.pipelines.generate import generate_chunk
from stemforge.pipelines.insert import insert_chunk
from stemforge.pipelines.loading import AudioModel
from stemforge.pipelines.progress import Reporter, SilentReporter
from stemforge.pipelines.sampling import (
    DEFAULT_ETA,
    DEFAULT_STEPS,
    SEPARATION_METHODS,
    SamplingOptions,
    default_separation_guidance,
    default_steps,
)
from stemforge.pipelines.separate import Method, separate_chunk

#: The longest generation accepted (one hour of audio is a mistake, not a request).
MAX_GENERATE_SECONDS = 600.0


def _options(
    defaults: Any = None,
    task: str | None = None,
    *,
    steps: int = DEFAULT_STEPS,
    sampler: str = "ddim",
    eta: float | None = None,
    seed: int = 0,
    chunk_seconds: float | None = None,
    overlap: float = 0.25,
    batch_size: int = 1,
    reporter: Reporter | None = None,
    allow_degenerate: bool = False,
) -> tuple[SamplingOptions, ChunkOptions, Reporter, OutputChecks]:
    if eta is None:
        eta = DEFAULT_ETA if defaults is None else defaults.eta_for(task)
    return (
        SamplingOptions(steps=steps, sampler=sampler, eta=eta, seed=seed),  # type: ignore[arg-type]
        ChunkOptions(chunk_seconds=chunk_seconds, overlap=overlap, batch_size=batch_size),
        reporter or SilentReporter(),
        OutputChecks(allow_degenerate=allow_degenerate),
    )


class MultiTrackPipeline(AudioModel):
    """A multi-track latent diffusion model (MSG-LD joint, subtractive or accompaniment) and its
    tasks. Build it with :meth:`from_pretrained`; the fields are those of the loaded folder."""

    kind = "multitrack"

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu") -> MultiTrackPipeline:
        """Rebuild the pipeline from a folder alone: a pipeline folder (``pipeline.json``, written by
        :meth:`save_pretrained`) or a `stemforge-train export` of an LDM with its codec."""
        from stemforge.pipelines.format import load_multitrack

        return load_multitrack(Path(path), device, cls)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write the pipeline folder (``pipeline.json`` + ``unet/``, ``codec/``, ``style/``, ``text/``)
        atomically: the folder appears complete or not at all. ``dtype=torch.float16`` halves the
        stored U-Net (it loads back into float32)."""
        from stemforge.pipelines.format import save_multitrack

        return save_multitrack(self, Path(path), dtype)

    # ---- inputs and outputs at the caller's rate

    def _to_model_rate(self, wave: Tensor, sample_rate: int, what: str) -> Tensor:
        if not isinstance(wave, Tensor) or wave.dim() != 1 or wave.numel() == 0:
            shape = tuple(wave.shape) if isinstance(wave, Tensor) else type(wave).__name__
            raise PipelineError(f"{what}: expected a mono waveform tensor (N,), got {shape}")
        if sample_rate <= 0:
            raise PipelineError(f"{what}: sample_rate {sample_rate} must be a positive rate in Hz")
        wave = wave.float()
        if sample_rate != self.sample_rate:
            from stemforge.data import resample

            wave = resample(wave, sample_rate, self.sample_rate)
        return wave

    def _to_rate(self, wave: Tensor, sample_rate: int, num_samples: int) -> Tensor:
        if sample_rate != self.sample_rate:
            from stemforge.data import resample

            wave = resample(wave, self.sample_rate, sample_rate)
        if wave.shape[-1] >= num_samples:
            return wave[..., :num_samples]
        return torch.nn.functional.pad(wave, (0, num_samples - wave.shape[-1]))

    # ---- tasks at the model's rate (the apps call these with audio already resampled). Each caller
    # validates first with the matching check_* method, before reading or resampling any audio;
    # these do not repeat it.

    def sample_from_mix(
        self,
        mix: Tensor,
        num_stems: int,
        sample_chunk: Callable[[Tensor, Tensor, Any, Any], Tensor],
        sampling: SamplingOptions,
        chunking: ChunkOptions,
        reporter: Reporter,
        names: list[str],
        checks: OutputChecks,
    ) -> Tensor:
        """Encode ``mix`` (N,) at the model's rate, sample ``num_stems`` stem latents chunk by chunk
        with ``sample_chunk(mix_latent, x_T, generator, progress)`` and decode them to the mix's
        length, checked against the mix (:func:`~stemforge.pipelines.chunked.decode`)."""
        mix_latent = encode(self, mix[None])[:, 0]
        latent = sample_in_chunks(
            self,
            mix.shape[-1],
            {"mix": mix_latent},
            num_stems,
            lambda c, x_T, gen, prog: sample_chunk(c["mix"], x_T, gen, prog),
            sampling,
            chunking,
            reporter,
        )
        return decode(
            self, latent, mix.shape[-1], names=names, reporter=reporter, checks=checks, reference=mix
        )

    def check_continuation(
        self,
        num_samples: int,
        sampling: SamplingOptions,
        chunking: ChunkOptions,
        reporter: Reporter,
        independent: bool,
    ) -> bool:
        """Whether the chunks continue each other; refuses, before any work, what continuation cannot do."""
        chunks = len(plan_chunks(self, num_samples, chunking)[2])
        if independent or chunks == 1:
            return False
        if sampling.sampler != "ddim":
            raise PipelineError(
                f"--sampler {sampling.sampler}: the audio spans {chunks} chunks, and continuing each from the "
                "previous one (inpainting) runs on DDIM only; pass --sampler ddim, or --independent-chunks "
                "to sample the chunks independently and crossfade them"
            )
        if chunking.batch_size > 1:
            reporter.note(
                f"note: the {chunks} chunks continue each other, so they run one at a time; --batch-size "
                "has no effect here (--independent-chunks samples them in batches)"
            )
        return True

    def check_separation(self, method: str, sampling: SamplingOptions) -> None:
        if method not in SEPARATION_METHODS:
            raise PipelineError(f"--method {method}: choose one of {', '.join(SEPARATION_METHODS)}")
        if self.single_stem:
            raise PipelineError(
                f"--checkpoint {self.path}: an {self.mode} model generates one stem; separation needs a "
                "joint (msgld) checkpoint"
            )
        if method != "cfg":
            sampling.require_ddim(f"--method {method}")

    def separate_waves(
        self,
        mix: Tensor,
        *,
        method: str,
        guidance: float,
        sampling: SamplingOptions,
        chunking: ChunkOptions,
        reporter: Reporter,
        checks: OutputChecks,
    ) -> Tensor:
        """(S, N) stems of ``mix`` (N,), both at the model's rate."""
        return self.sample_from_mix(
            mix,
            len(self.stems),
            lambda mix_latent, x_T, gen, prog: separate_chunk(
                self,
                mix_latent,
                x_T,
                method=cast(Method, method),
                guidance=guidance,
                options=sampling,
                generator=gen,
                progress=prog,
            ),
            sampling,
            chunking,
            reporter,
            list(self.stems),
            checks,
        )

    def check_generation(self, seconds: float) -> None:
        if self.single_stem:
            raise PipelineError(f"--checkpoint {self.path}: generation needs a joint (msgld) checkpoint")
        if not 0 < seconds <= MAX_GENERATE_SECONDS:
            raise PipelineError(
                f"--seconds {seconds}: give a length in (0, {MAX_GENERATE_SECONDS:.0f}] seconds"
            )

    def generate_waves(
        self,
        num_samples: int,
        *,
        sampling: SamplingOptions,
        chunking: ChunkOptions,
        reporter: Reporter,
        checks: OutputChecks,
        independent_chunks: bool = False,
    ) -> Tensor:
        """(S, num_samples) stems generated together (MSG-LD, w = 0) at the model's rate."""
        continued = self.check_continuation(num_samples, sampling, chunking, reporter, independent_chunks)
        stems = sample_in_chunks(
            self,
            num_samples,
            {},
            len(self.stems),
            lambda c, x_T, gen, prog: generate_chunk(
                self,
                x_T,
                options=sampling,
                generator=gen,
                progress=prog,
                context=c.get("context"),
                known=c.get("known"),
            ),
            sampling,
            chunking,
            reporter,
            continued=continued,
        )
        return decode(self, stems, num_samples, names=list(self.stems), reporter=reporter, checks=checks)

    def check_arrangement(self, given: list[str], sampling: SamplingOptions) -> None:
        if self.single_stem:
            raise PipelineError(f"--checkpoint {self.path}: arrangement needs a joint (msgld) checkpoint")
        sampling.require_ddim("arrangement by inpainting")
        for name in given:
            self.check_stem(name, "--given")
        if len(set(given)) == len(self.stems):
            raise PipelineError(
                f"--given names every stem ({', '.join(self.stems)}); leave out the ones to generate"
            )

    def arrange_waves(
        self,
        given: dict[str, Tensor],
        *,
        sampling: SamplingOptions,
        chunking: ChunkOptions,
        reporter: Reporter,
        checks: OutputChecks,
        independent_chunks: bool = False,
    ) -> tuple[list[str], Tensor, Tensor]:
        """The missing stems' names, their (K, N) waves and the (S, N) given stems (zeros where
        missing), every wave at the model's rate and the length of the longest given stem."""
        num_samples = max(wave.shape[-1] for wave in given.values())
        waves = torch.zeros(len(self.stems), num_samples)
        mask = torch.zeros(1, len(self.stems), dtype=torch.bool)
        for name, wave in given.items():
            index = self.stems.index(name)
            waves[index, : wave.shape[-1]] = wave
            mask[0, index] = True
        continued = self.check_continuation(num_samples, sampling, chunking, reporter, independent_chunks)
        given_latent = encode(self, waves)
        stems = sample_in_chunks(
            self,
            num_samples,
            {"given": given_latent},
            len(self.stems),
            lambda c, x_T, gen, prog: arrange_chunk(
                self,
                c["given"],
                mask.expand(x_T.shape[0], -1).to(x_T.device),
                x_T,
                options=sampling,
                generator=gen,
                progress=prog,
                context=c.get("context"),
                known=c.get("known"),
            ),
            sampling,
            chunking,
            reporter,
            continued=continued,
        )
        missing = [i for i, name in enumerate(self.stems) if name not in given]
        names = [self.stems[i] for i in missing]
        generated = decode(
            self,
            stems[:, missing],
            num_samples,
            names=names,
            reporter=reporter,
            checks=checks,
            reference=waves,
        )
        return names, generated, waves

    def check_insertion(self, stem: str) -> None:
        """The stem a one-stem or joint model can insert into a mixture."""
        if self.mode == "subtractive":
            self.check_stem(stem)
            if stem not in self.insert_stems:
                raise PipelineError(
                    f"--stem {stem}: the checkpoint {self.path} was trained to insert {', '.join(self.insert_stems)}; "
                    "choose one of them or another checkpoint"
                )
        elif self.mode == "accompaniment":
            if stem != self.target:
                raise PipelineError(
                    f"--stem {stem}: the checkpoint {self.path} generates {self.target!r} only; "
                    f"pass --stem {self.target} or another checkpoint"
                )
        else:
            self.check_stem(stem)
            if len(self.stems) < 2:
                raise PipelineError(f"--checkpoint {self.path}: a one-stem joint model cannot insert a stem")

    def text_condition(self, instruction: str | None, reporter: Reporter) -> dict[str, Tensor] | None:
        """The instruction's MiniLM encoding (1, ...) for a text-conditioned checkpoint."""
        if instruction is not None and not instruction.strip():
            raise PipelineError(
                "--instruction is empty; describe the stem to insert, or leave the option out"
            )
        if not self.has_text:
            if instruction:
                raise PipelineError(
                    f"--instruction: the checkpoint {self.label} ({self.path}) has no text conditioning, so the "
                    "instruction cannot be used; leave out --instruction, or pass a text-conditioned checkpoint "
                    "(`model.mode: subtractive`, e.g. configs/tiny-subtractive.yaml)"
                )
            return None
        if not instruction:
            reporter.note(
                f"note: no --instruction; {self.label} inserts the stem with its learned null instruction"
            )
            return None
        device = next(self.unet.parameters()).device
        return {k: v.to(device) for k, v in self.text_encoder()([instruction]).as_cond().items()}

    def insert_waves(
        self,
        mix: Tensor,
        stem: str,
        *,
        instruction: str | None = None,
        guidance: float = 1.0,
        sampling: SamplingOptions,
        chunking: ChunkOptions,
        reporter: Reporter,
        checks: OutputChecks,
    ) -> Tensor:
        """(1, N) ``stem`` inserted into ``mix`` (N,) that lacks it, at the model's rate."""
        text = self.text_condition(instruction, reporter)
        stems_out = 1 if self.single_stem else len(self.stems)
        return self.sample_from_mix(
            mix,
            stems_out,
            lambda mix_latent, x_T, gen, prog: insert_chunk(
                self,
                stem,
                mix_latent,
                x_T,
                guidance=guidance,
                options=sampling,
                generator=gen,
                text=text,
                progress=prog,
            ),
            sampling,
            chunking,
            reporter,
            [stem],
            checks,
        )

    def check_accompaniment(self, style_strength: float, guidance: float, rescale: float) -> None:
        if not 0 <= style_strength <= 1:
            raise PipelineError(f"--style-strength {style_strength}: give a value in [0, 1]")
        if not 0 <= rescale <= 1:
            raise PipelineError(f"--rescale {rescale}: give a value in [0, 1]")
        if guidance < 0:
            raise PipelineError(f"--guidance {guidance}: must be >= 0")
        if self.mode == "subtractive":
            raise PipelineError(
                f"--checkpoint {self.path}: a subtractive (text-conditioned) model inserts stems with "
                "`audio --instruction`; accompany needs an accompaniment or a joint (msgld) checkpoint"
            )

    @torch.no_grad()
    def style_vector(
        self, style_latent: Tensor | None, reporter: Reporter, what: str = "the reference"
    ) -> Tensor | None:
        """The style-conditioned model's learned style vector (1, D) of the reference, or None."""
        if style_latent is None:
            if self.has_style:
                reporter.note(f"note: no --style; {self.label} accompanies with its learned null style")
            return None
        if self.style_encoder is None:
            reporter.note(
                f"note: {self.label} has no style input; --style {what} grounds the sampled stem's statistics only"
            )
            return None
        return self.style_encoder(style_latent.float())

    def accompany_waves(
        self,
        mix: Tensor,
        stem: str,
        *,
        style: Tensor | None = None,
        style_name: str = "the reference",
        style_strength: float = 0.7,
        guidance: float = 3.0,
        rescale: float = 0.7,
        sampling: SamplingOptions,
        chunking: ChunkOptions,
        reporter: Reporter,
        checks: OutputChecks,
    ) -> Tensor:
        """(1, N) ``stem`` accompanying ``mix`` (N,), in the timbre of ``style`` (N',) when given,
        at the model's rate (Pasini et al.: CFG with rescale, style grounding)."""
        style_latent = None
        if style is not None:
            style_latent = encode(self, style[None])[:, 0]
            if style_latent.shape[-2] < 2:
                raise PipelineError(
                    f"--style {style_name}: too short for its statistics; give at least a second of audio"
                )
        vector = self.style_vector(style_latent, reporter, style_name)
        if self.mode != "accompaniment":
            reporter.note(
                f"note: {self.label} is a joint model; the mixture enters as a constraint, so --guidance and "
                "--rescale are not used"
            )
        stems_out = 1 if self.mode == "accompaniment" else len(self.stems)
        return self.sample_from_mix(
            mix,
            stems_out,
            lambda mix_latent, x_T, gen, prog: accompany_chunk(
                self,
                stem,
                mix_latent,
                x_T,
                style_latent=style_latent,
                style_strength=style_strength,
                style=vector,
                guidance=guidance,
                rescale=rescale,
                options=sampling,
                generator=gen,
                progress=prog,
            ),
            sampling,
            chunking,
            reporter,
            [stem],
            checks,
        )

    # ---- the public tensor API

    def separate(
        self,
        mix: Tensor,
        sample_rate: int,
        *,
        method: str = "cfg",
        guidance: float | None = None,
        **options: Any,
    ) -> dict[str, Tensor]:
        """Stems of ``mix`` (N,) at ``sample_rate``: CFG separation (MSG-LD, ``guidance`` w >= 1;
        default: the pipeline's recorded w, else 2) or MSDM's Dirac / Gaussian posteriors in DDIM
        form. ``steps`` default: the pipeline's recorded steps for ``method``, else 50. Returns
        {stem: (N,)}."""
        options.setdefault("steps", default_steps(self, "separate", method))
        sampling, chunking, reporter, checks = _options(self.sampler_defaults, "separate", **options)
        if guidance is None:
            guidance = default_separation_guidance(self)
        self.check_separation(method, sampling)
        waves = self.separate_waves(
            self._to_model_rate(mix, sample_rate, "mix"),
            method=method,
            guidance=guidance,
            sampling=sampling,
            chunking=chunking,
            reporter=reporter,
            checks=checks,
        )
        out = self._to_rate(waves, sample_rate, mix.shape[-1])
        return dict(zip(self.stems, out))

    def generate(
        self,
        seconds: float,
        *,
        sample_rate: int | None = None,
        independent_chunks: bool = False,
        **options: Any,
    ) -> dict[str, Tensor]:
        """``seconds`` of every stem generated together (MSG-LD's total generation, w = 0), at
        ``sample_rate`` (default: the model's). Returns {stem: (N,)}."""
        sampling, chunking, reporter, checks = _options(self.sampler_defaults, "generate", **options)
        self.check_generation(seconds)
        rate = sample_rate or self.sample_rate
        waves = self.generate_waves(
            max(1, round(seconds * self.sample_rate)),
            sampling=sampling,
            chunking=chunking,
            reporter=reporter,
            checks=checks,
            independent_chunks=independent_chunks,
        )
        return dict(zip(self.stems, self._to_rate(waves, rate, round(seconds * rate))))

    def arrange(
        self, given: dict[str, Tensor], sample_rate: int, *, independent_chunks: bool = False, **options: Any
    ) -> dict[str, Tensor]:
        """The missing stems generated around the ``given`` ones ({stem: (N,)} at ``sample_rate``;
        MSG-LD's arrangement by inpainting). Returns {missing stem: (N,)}."""
        sampling, chunking, reporter, checks = _options(self.sampler_defaults, "arrange", **options)
        if not given:
            raise PipelineError("arrange: give at least one stem")
        self.check_arrangement(list(given), sampling)
        waves = {name: self._to_model_rate(w, sample_rate, f"given stem {name}") for name, w in given.items()}
        names, generated, _ = self.arrange_waves(
            waves,
            sampling=sampling,
            chunking=chunking,
            reporter=reporter,
            checks=checks,
            independent_chunks=independent_chunks,
        )
        length = max(w.shape[-1] for w in given.values())
        return dict(zip(names, self._to_rate(generated, sample_rate, length)))

    def insert(
        self,
        mix: Tensor,
        sample_rate: int,
        stem: str,
        *,
        instruction: str | None = None,
        guidance: float = 1.0,
        **options: Any,
    ) -> Tensor:
        """``stem`` (N,) inserted into ``mix`` (N,) that lacks it (Subtractive Training with a text
        ``instruction`` and CFG ``guidance``; a joint model inserts by MSDM's Dirac posterior)."""
        sampling, chunking, reporter, checks = _options(self.sampler_defaults, "insert", **options)
        self.check_insertion(stem)
        wave = self.insert_waves(
            self._to_model_rate(mix, sample_rate, "mix"),
            stem,
            instruction=instruction,
            guidance=guidance,
            sampling=sampling,
            chunking=chunking,
            reporter=reporter,
            checks=checks,
        )
        return self._to_rate(wave[0], sample_rate, mix.shape[-1])

    def accompany(
        self,
        mix: Tensor,
        sample_rate: int,
        stem: str,
        *,
        style: Tensor | None = None,
        style_strength: float = 0.7,
        guidance: float = 3.0,
        rescale: float = 0.7,
        **options: Any,
    ) -> Tensor:
        """``stem`` (N,) accompanying ``mix`` (N,), in the timbre of ``style`` (a reference at the
        same ``sample_rate``) when given (Pasini et al.)."""
        sampling, chunking, reporter, checks = _options(self.sampler_defaults, "accompany", **options)
        self.check_accompaniment(style_strength, guidance, rescale)
        self.check_insertion(stem)
        wave = self.accompany_waves(
            self._to_model_rate(mix, sample_rate, "mix"),
            stem,
            style=None if style is None else self._to_model_rate(style, sample_rate, "style"),
            style_strength=style_strength,
            guidance=guidance,
            rescale=rescale,
            sampling=sampling,
            chunking=chunking,
            reporter=reporter,
            checks=checks,
        )
        return self._to_rate(wave[0], sample_rate, mix.shape[-1])

"""Audio of any length and rate through a latent diffusion model: encode, sample in crossfaded
chunks, decode, and return waveforms at the model's rate.

Every command encodes its inputs with the checkpoint's codec (itself chunked, so memory does not
grow with the length), pads the latent frames to a multiple of the U-Net's downsampling factor,
samples chunk batches (:mod:`stemforge.pipelines.chunking`), and decodes the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from stemforge.pipelines.chunking import chunk_plan, pad_frames, run_chunked, run_continued
from stemforge.pipelines.errors import PipelineError
from stemforge.pipelines.loading import AudioModel
from stemforge.pipelines.progress import Reporter
from stemforge.pipelines.sampling import SamplingOptions, chunk_noise, step_generator

#: Chunk length when the checkpoint does not record its training segment (MSG-LD's 10.24 s).
DEFAULT_CHUNK_SECONDS = 10.24


@dataclass(frozen=True)
class ChunkOptions:
    chunk_seconds: float | None = None
    """None: the checkpoint's training segment length."""
    overlap: float = 0.25
    """Fraction of a chunk shared with its neighbour and crossfaded."""
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.chunk_seconds is not None and self.chunk_seconds <= 0:
            raise PipelineError(f"--chunk-seconds {self.chunk_seconds}: must be positive")
        if not 0 <= self.overlap < 1:
            raise PipelineError(f"--overlap {self.overlap}: give a fraction in [0, 1)")
        if self.batch_size < 1:
            raise PipelineError(f"--batch-size {self.batch_size}: give at least 1")


def latent_frames(model: AudioModel, num_samples: int) -> int:
    return int(model.codec.latent_shape(num_samples)[1])


@torch.no_grad()
def encode(model: AudioModel, wave: Tensor) -> Tensor:
    """(K, N) waves at the model's rate -> (1, K, C, T, F) latents."""
    device = next(model.unet.parameters()).device
    latent = model.codec.encode(wave.reshape(1, wave.shape[0], -1).to(device))
    if not torch.isfinite(latent).all():
        raise PipelineError(
            "the codec produced NaN latents for the input; check the audio (clipping, silence)"
        )
    return latent


@dataclass(frozen=True)
class OutputChecks:
    """What happens when decoded audio is degenerate (:func:`stemforge.codec.audio_problems`)."""

    allow_degenerate: bool = False
    """False: an error naming the component, nothing written. True: a warning (shown even with
    --quiet) and the files are written."""


#: Scaled latents of a healthy model have a standard deviation near 1; far outside this range the
#: diffusion model, not the codec, is the component that failed.
LATENT_STD_RANGE = (0.2, 5.0)


def _component(model: AudioModel, latents: Tensor) -> str:
    std = float(latents.float().std()) if latents.numel() > 1 else 0.0
    low, high = LATENT_STD_RANGE
    if not low <= std <= high:
        return (
            f"the diffusion model of {model.label} ({model.path}), whose sampled latents have std {std:.3g} "
            f"(a working model gives about 1)"
        )
    which = "codec" if model.sample_decoder is None else "sample decoder"
    return f"the {which} of {model.label} ({model.path}), decoding latents of std {std:.3g},"


@torch.no_grad()
def decode(
    model: AudioModel,
    latents: Tensor,
    num_samples: int,
    *,
    names: Sequence[str],
    reporter: Reporter,
    checks: OutputChecks = OutputChecks(),
    reference: Tensor | None = None,
) -> Tensor:
    """(1, S, C, T, F) latents -> (S, num_samples) waves at the model's rate, checked.

    ``names`` label the S stems in messages; ``reference`` is the audio the stems were made from
    (a silent stem from an audible input is degenerate). A degenerate result raises
    :class:`~stemforge.pipelines.errors.PipelineError` naming the component that produced it, unless
    ``checks.allow_degenerate`` (then a warning).
    """
    from stemforge.codec import audio_problems

    if not torch.isfinite(latents).all():
        raise PipelineError(
            f"the diffusion model of {model.label} ({model.path}) sampled NaN or inf latents; try more --steps "
            "or another --seed; nothing was written"
        )
    device = next(model.unet.parameters()).device
    wave = model.output_codec.decode(latents.to(device))[0].float().cpu()
    if wave.shape[-1] < num_samples:
        wave = torch.nn.functional.pad(wave, (0, num_samples - wave.shape[-1]))
    wave = wave[:, :num_samples]
    problems = audio_problems(wave, names=names, reference=reference)
    if problems:
        message = f"{_component(model, latents)} produced degenerate audio: {'; '.join(problems)}"
        if not checks.allow_degenerate:
            raise PipelineError(f"{message}. Nothing was written; pass --allow-degenerate to write it anyway")
        reporter.note(f"warning: {message} (written because of --allow-degenerate)")
    return wave


#: Peak level a mixture written by the commands is brought down to when the stems' sum would clip.
MIX_PEAK = 10 ** (-1 / 20)


def limit_mix(mix: Tensor) -> tuple[Tensor, dict[str, float | bool]]:
    """``mix`` (N,) scaled down to a -1 dBFS peak when the sum of stems would clip, and what was done
    (written as ``mix.json`` beside ``mix.wav``); the stems themselves are not changed."""
    peak = float(mix.abs().max()) if mix.numel() else 0.0
    gain = MIX_PEAK / peak if peak > 1.0 else 1.0
    info: dict[str, float | bool] = {
        "peak_of_sum": round(peak, 6),
        "peak_normalised": gain != 1.0,
        "gain_db": round(20 * math.log10(gain), 3),
    }
    return mix * gain, info


ChunkSampler = Callable[[dict[str, Tensor], Tensor, list[torch.Generator], Callable], Tensor]


def plan_chunks(
    model: AudioModel, num_samples: int, chunking: ChunkOptions
) -> tuple[int, int, list[tuple[int, int]]]:
    """(latent frames, padded frames, chunk bounds) of ``num_samples`` samples at the model's rate."""
    frames = latent_frames(model, num_samples)
    seconds = chunking.chunk_seconds or model.segment_seconds or DEFAULT_CHUNK_SECONDS
    chunk = max(1, round(seconds * model.codec.latent_rate))
    overlap = math.floor(chunk * chunking.overlap)
    padded, bounds = chunk_plan(frames, chunk, overlap, model.config.downsample_factor)
    return frames, padded, bounds


@torch.no_grad()
def sample_in_chunks(
    model: AudioModel,
    num_samples: int,
    inputs: dict[str, Tensor],
    out_stems: int,
    sample: ChunkSampler,
    sampling: SamplingOptions,
    chunking: ChunkOptions,
    reporter: Reporter,
    *,
    continued: bool = False,
) -> Tensor:
    """Latents (1, out_stems, C, T, F) for ``num_samples`` samples at the model's rate.

    ``inputs`` are (1, ..., T, F) latents over the whole file; ``sample(chunk_inputs, x_T,
    generator, progress)`` returns (n, out_stems, C, T_chunk, F). ``continued``: chunks run one
    after the other, each continuing the previous ones (``chunk_inputs`` then also hold
    ``"context"`` and ``"known"``, :func:`~stemforge.pipelines.chunking.run_continued`); otherwise they
    run independently in batches and are crossfaded.
    """
    frames, padded, bounds = plan_chunks(model, num_samples, chunking)
    padded_inputs = {k: pad_frames(v, padded) for k, v in inputs.items()}
    device = next(model.unet.parameters()).device
    latent_shape = model.codec.latent_shape(num_samples)
    per_stem = (latent_shape[0], bounds[0][1] - bounds[0][0], latent_shape[2])
    reporter.start_chunks(len(bounds))

    def run(chunk_inputs: dict[str, Tensor], indices: list[int]) -> Tensor:
        x_T = chunk_noise((out_stems, *per_stem), sampling.seed, indices, device)
        gen = step_generator(sampling.seed, indices)
        moved = {k: v.to(device) for k, v in chunk_inputs.items()}
        return sample(moved, x_T, gen, reporter.steps)

    if continued:
        latents = run_continued(run, padded_inputs, bounds, padded, on_chunks_done=reporter.chunks_done)
    else:
        latents = run_chunked(
            run,
            padded_inputs,
            bounds,
            padded,
            batch_size=chunking.batch_size,
            on_chunks_done=reporter.chunks_done,
        )
    return latents[..., :frames, :]

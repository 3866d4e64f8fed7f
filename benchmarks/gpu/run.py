"""Paper-size speed on one GPU: attention kernels, the 305M U-Net, a 10.24 s clip end to end, a ZeRO-2 training step.

Writes one JSON (``benchmarks/gpu/results-<device>.json``) with four sections, each measured in its
own process (so that its peak memory is its own and a crash or an overrun costs that section only)
and written to the JSON, atomically, as soon as it has figures:

1. ``attention``: the fused Triton kernel (stemforge-kernels) against the reference backend,
   forward and backward (max abs / relative error and the tolerance used), and its speed against
   torch SDPA with the relative-position bias materialised (and without any bias: the floor) at
   the U-Net's attention sizes (8192, 2048, 512 tokens x 8, 12, 20 heads of 32 channels), bf16.
2. ``unet``: the paper-size U-Net (``msgld-slakh``, random weights) forward and forward+backward
   in bf16 at batch 1 and at the largest batch that fits (doubling until out of memory): time,
   peak memory, tokens/s, achieved TFLOP/s and MFU. FLOPs: ``torch.utils.flop_counter`` on one
   forward; forward+backward counts 3x forward.
3. ``end_to_end``: one 10.24 s clip separated by ``MultiTrackPipeline.separate`` with the original
   recipe (DDIM-200, CFG w = 2, the conditional and unconditional rows in one batched call) and
   with the few-step default of the embedded model (DDIM-10, eta 1, w = 1: one row per step);
   paper-size MSG-LD codec (mel VAE + HiFi-GAN) with random weights; stage breakdown encode /
   sample / decode and wall seconds per clip.
4. ``train``: training steps of the paper-size LDM (configs/msgld-slakh.yaml, batch 8) under
   lightning-fabric + DeepSpeed ZeRO-2, bf16, built by stemforge-train's ``make_fabric``; MFU
   with model FLOPs = 3x forward.

Every timing is the median of several runs after warm-up, timed with CUDA events on a GPU
(``time.perf_counter`` on CPU). ``--budget-s`` bounds the whole run: a section that would overrun
is stopped (its figures so far are kept), and sections that no longer fit are skipped with the
reason. ``--tiny`` runs the same code at a tiny size on CPU (tiny U-Net and codec, a few steps,
the reference attention in place of Triton) in well under a minute; the test suite runs it.

    bash benchmarks/gpu/run.sh                      # on the GPU machine: results-<device>.json
    python benchmarks/gpu/run.py --tiny --out /tmp/tiny.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import queue as queue_module
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import machine_info  # noqa: E402

FORMAT_VERSION = 1
SECTIONS = ("attention", "unet", "end_to_end", "train")
# Dense bf16 tensor-core peak in TFLOP/s by device-name fragment (NVIDIA data sheets, without
# sparsity); the first fragment found in the device name wins, so the specific names come first.
BF16_DENSE_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("A100", 312.0),
)
# Tolerances of the candidate kernel against the float64 reference on the same rounded inputs:
# those of stemforge-kernels' tests (test_kernels_triton.py), elementwise |got - want| <= atol +
# rtol |want|. bf16 rounds P and dS to 8 mantissa bits before the second matmuls.
TOLERANCE = {"bfloat16": 3e-2, "float16": 5e-3, "float32": 2e-5}
# A section is not started with less than this fraction of the budget left, and each section leaves
# this fraction to every section after it.
RESERVE_FRACTION = 0.08


@dataclass(frozen=True)
class Profile:
    """The sizes of one run: the paper's on a GPU, or tiny ones for the CPU test."""

    name: str
    unet_preset: str
    codec_preset: str
    train_config: str
    clip_seconds: float
    ddim_steps: int
    few_steps: int
    guidance: float
    max_batch: int
    train_batch: int
    warmup: int
    repeats: int
    e2e_repeats: int
    train_steps: int
    target_s: float


PAPER = Profile(
    name="paper",
    unet_preset="msgld-slakh",
    codec_preset="msgld",
    train_config="configs/msgld-slakh.yaml",
    clip_seconds=10.24,
    ddim_steps=200,
    few_steps=10,
    guidance=2.0,
    max_batch=256,
    train_batch=8,
    warmup=3,
    repeats=10,
    e2e_repeats=3,
    train_steps=3,
    target_s=4.0,
)
TINY = Profile(
    name="tiny",
    unet_preset="tiny",
    codec_preset="tiny",
    train_config="configs/tiny-ldm.yaml",
    clip_seconds=0.64,
    ddim_steps=4,
    few_steps=3,
    guidance=2.0,
    max_batch=2,
    train_batch=2,
    warmup=1,
    repeats=2,
    e2e_repeats=2,
    train_steps=2,
    target_s=0.5,
)


# ---------------------------------------------------------------------------------------------
# Timing


class Clock:
    """Marks on the device's timeline: CUDA events on a GPU, ``perf_counter`` on CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds between two marks (synchronises the device first)."""
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return end - start

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def reset_peak(device: str) -> float:
    """Start a peak-memory window; returns the bytes allocated now (the window's base)."""
    if device != "cuda":
        return 0.0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return float(torch.cuda.memory_allocated())


def peak_mib(device: str, base: float) -> float | None:
    """``torch.cuda.max_memory_allocated`` above ``base`` since :func:`reset_peak` (None on CPU)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def measure(step: Callable[[], Any], clock: Clock, profile: Profile, deadline: float) -> list[float]:
    """Times of ``step``: one untimed first run (compilation, cuDNN autotuning, allocation: the peak
    memory), then warm-up and repeats budgeted to about ``profile.target_s`` of timed work (at least
    ``min(3, profile.repeats)`` runs, at most ``profile.repeats``)."""
    clock.sync()
    first = time.perf_counter()
    step()
    clock.sync()
    first_s = max(time.perf_counter() - first, 1e-6)
    repeats = max(min(3, profile.repeats), min(profile.repeats, int(profile.target_s / first_s)))
    warmup = max(1, min(profile.warmup, int(profile.target_s / 4 / first_s)))
    return time_runs(step, clock, warmup, repeats, deadline)


def time_runs(
    step: Callable[[], Any], clock: Clock, warmup: int, repeats: int, deadline: float
) -> list[float]:
    """Seconds of ``repeats`` runs of ``step`` after ``warmup`` untimed ones; stops repeating (keeping
    at least one timed run) when the next run would pass ``deadline`` (``time.time()``)."""
    for _ in range(warmup):
        step()
    clock.sync()
    times: list[float] = []
    for _ in range(repeats):
        if times and time.time() + 1.5 * max(times) > deadline:
            break
        start = clock.mark()
        step()
        end = clock.mark()
        times.append(clock.seconds(start, end))
    return times


def summary(times: list[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(times), "times_s": times, "runs": len(times)}


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Shared helpers


def unet_config(profile: Profile, backend: str = "auto") -> Any:
    from stemforge.unet3d import UNet3DConfig

    return UNet3DConfig.from_name(profile.unet_preset, attention_backend=backend)


def latent_frames(profile: Profile) -> int:
    """Latent frames T of one clip (256 for 10.24 s: 163,840 samples, mel hop 160, VAE r = 4)."""
    from stemforge.codec import MelVAECodecConfig

    cfg = MelVAECodecConfig.from_name(profile.codec_preset)
    return math.ceil(
        round(profile.clip_seconds * cfg.mel.sample_rate) / (cfg.mel.hop_length * cfg.vae.compression)
    )


def latent_shape(profile: Profile) -> tuple[int, int, int, int]:
    """(S, C, T, F) of one clip's stem latents."""
    from stemforge.codec import MelVAECodecConfig

    cfg = MelVAECodecConfig.from_name(profile.codec_preset)
    stems = unet_config(profile).in_channels
    return stems, cfg.vae.embed_dim, latent_frames(profile), cfg.mel.n_mels // cfg.vae.compression


def forward_flops(profile: Profile) -> float:
    """FLOPs of one U-Net forward at batch 1 (``FlopCounterMode`` on the meta device; attention runs
    through the reference backend so that its two matmuls are counted; the count is the same for
    every backend)."""
    from torch.utils.flop_counter import FlopCounterMode

    from stemforge.unet3d import UNet3D

    with torch.device("meta"):
        model = UNet3D(unet_config(profile, "reference"))
    s, c, t, f = latent_shape(profile)
    x = torch.empty(1, s, c, t, f, device="meta")
    cond = {"mix_latent": torch.empty(1, c, t, f, device="meta")} if model.config.mixture_conditioning else {}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, torch.zeros(1, device="meta"), cond)
    return float(counter.get_total_flops())


def attention_levels(profile: Profile) -> list[tuple[int, int, int]]:
    """(tokens, heads, head_dim) of the U-Net's attention layers over one clip's latent: full
    (C x T x F) attention after the blocks at each downsampling factor and in the middle block."""
    cfg = unet_config(profile)
    _, c, t, f = latent_shape(profile)
    middle = 2 ** (len(cfg.channel_mult) - 1)
    levels = []
    for ds in sorted(set(cfg.attention_downsample) | {middle}):
        width = cfg.model_channels * cfg.channel_mult[int(math.log2(ds))]
        levels.append((c * (t // ds) * (f // ds), width // cfg.head_channels, cfg.head_channels))
    return sorted(levels, reverse=True)


def mfu(flops: float, seconds: float, peak_tflops: float | None) -> dict[str, float | None]:
    achieved = flops / seconds / 1e12
    return {"tflops_per_s": achieved, "mfu": achieved / peak_tflops if peak_tflops else None}


# ---------------------------------------------------------------------------------------------
# 1. attention


def section_attention(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from stemforge.kernels import attention

    profile, device, deadline = Profile(**spec["profile"]), spec["device"], spec["deadline"]
    dtype = getattr(torch, spec["dtype"])
    clock = Clock(device)
    candidate = "triton" if device == "cuda" else "reference"
    tol = TOLERANCE[spec["dtype"]]
    out: dict[str, Any] = {
        "dtype": spec["dtype"],
        "batch": 1,
        "candidate": f"{candidate}-bias",
        "candidate_note": None
        if candidate == "triton"
        else "no CUDA device: the reference backend stands in for the Triton kernel (same code path)",
        "variants": {
            "sdpa-nobias": "torch SDPA without any bias (flash kernel on GPU): the floor",
            "sdpa-bias": "torch SDPA with the (H, 2L-1) relative-position table expanded to an L x L mask: the baseline",
            f"{candidate}-bias": f"stemforge.kernels.attention(backend='{candidate}') with the table"
            + (
                " (bias read inside the kernel per tile)"
                if candidate == "triton"
                else " (L x L bias in float32)"
            ),
        },
        "accuracy_method": (
            "candidate on inputs rounded to the run dtype against the reference backend in float64 on "
            "the same rounded inputs; max_abs = max |got - want|, max_rel = max |got - want| / max |want|; "
            "within_tolerance: |got - want| <= atol + rtol |want| everywhere"
        ),
        "tolerance": {"atol": tol, "rtol": tol},
        "flops_note": "forward 4 B H L^2 D; forward+backward 3.5x forward (FlashAttention-2 accounting)",
        "accuracy": [],
        "speed": [],
    }
    levels = attention_levels(profile)
    gen = torch.Generator(device=device).manual_seed(0)
    for tokens, heads, head_dim in levels:
        if time.time() > deadline:
            out["accuracy"].append({"tokens": tokens, "heads": heads, "skipped": "section deadline reached"})
            continue
        q, k, v, grad = (
            torch.randn(1, heads, tokens, head_dim, device=device, generator=gen).to(dtype) for _ in range(4)
        )
        table = torch.randn(heads, 2 * tokens - 1, device=device, generator=gen)

        def grads(backend: str, dt: torch.dtype, q=q, k=k, v=v, grad=grad, table=table) -> list[torch.Tensor]:
            leaves = [x.detach().to(dt).requires_grad_() for x in (q, k, v)]
            tab = table.detach().to(torch.float64 if dt == torch.float64 else torch.float32).requires_grad_()
            result = attention(*leaves, rel_bias_table=tab, backend=backend)  # type: ignore[arg-type]
            found = torch.autograd.grad(result, [*leaves, tab], grad.to(dt))
            return [t.detach() for t in (result, *found)]

        row: dict[str, Any] = {"tokens": tokens, "heads": heads, "head_dim": head_dim, "errors": {}}
        try:
            got = grads(candidate, dtype)
            want = grads("reference", torch.float64)
            for name, g, w in zip(("out", "dq", "dk", "dv", "dtable"), got, want):
                diff = (g.double() - w).abs()
                scale = float(w.abs().max())
                row["errors"][name] = {
                    "max_abs": float(diff.max()),
                    "max_rel": float(diff.max()) / scale if scale > 0 else None,
                    "within_tolerance": bool((diff <= tol + tol * w.abs()).all()),
                }
            row["within_tolerance"] = all(e["within_tolerance"] for e in row["errors"].values())
        except Exception as err:
            row["error"] = _describe(err)
        del q, k, v, grad, table
        free_memory()
        out["accuracy"].append(row)
        emit(out)

    variants = {
        "sdpa-nobias": ("sdpa", False),
        "sdpa-bias": ("sdpa", True),
        f"{candidate}-bias": (candidate, True),
    }
    for tokens, heads, head_dim in levels:
        for mode in ("fwd", "fwd+bwd"):
            for name, (backend, bias) in variants.items():
                row = {"tokens": tokens, "heads": heads, "head_dim": head_dim, "mode": mode, "variant": name}
                if time.time() > deadline:
                    row["skipped"] = "section deadline reached"
                else:
                    row.update(
                        _time_attention(
                            backend,
                            bias,
                            tokens,
                            heads,
                            head_dim,
                            mode,
                            dtype,
                            device,
                            clock,
                            profile,
                            deadline,
                        )
                    )
                flops = 4.0 * heads * tokens * tokens * head_dim * (3.5 if mode == "fwd+bwd" else 1.0)
                row["flops"] = flops
                if "median_s" in row:
                    row["tflops_per_s"] = flops / row["median_s"] / 1e12
                out["speed"].append(row)
                free_memory()
            emit(_attention_ratios(out))
    return _attention_ratios(out)


def _time_attention(
    backend: str,
    bias: bool,
    tokens: int,
    heads: int,
    head_dim: int,
    mode: str,
    dtype: torch.dtype,
    device: str,
    clock: Clock,
    profile: Profile,
    deadline: float,
) -> dict[str, Any]:
    from stemforge.kernels import attention

    backward = mode == "fwd+bwd"
    try:
        q, k, v = (
            torch.randn(1, heads, tokens, head_dim, device=device, dtype=dtype, requires_grad=backward)
            for _ in range(3)
        )
        table = torch.randn(heads, 2 * tokens - 1, device=device, requires_grad=backward) if bias else None
        grad = torch.randn(1, heads, tokens, head_dim, device=device, dtype=dtype)

        def step() -> None:
            if backward:
                attention(q, k, v, rel_bias_table=table, backend=backend).backward(grad)  # type: ignore[arg-type]
                for x in (q, k, v, table):
                    if x is not None:
                        x.grad = None
            else:
                with torch.no_grad():
                    attention(q, k, v, rel_bias_table=table, backend=backend)  # type: ignore[arg-type]

        base = reset_peak(device)
        times = measure(step, clock, profile, deadline)
        peak = peak_mib(device, base)
        return {**summary(times), "median_ms": statistics.median(times) * 1e3, "peak_mem_mib": peak}
    except Exception as err:
        return {"error": _describe(err)}


def _attention_ratios(out: dict[str, Any]) -> dict[str, Any]:
    """Speed of every row relative to SDPA with the bias and without any bias, same size and mode."""
    for row in out["speed"]:
        for base_name in ("sdpa-bias", "sdpa-nobias"):
            base = next(
                (
                    r
                    for r in out["speed"]
                    if r["variant"] == base_name
                    and r["tokens"] == row["tokens"]
                    and r["mode"] == row["mode"]
                    and "median_s" in r
                ),
                None,
            )
            if base is not None and "median_s" in row:
                row[f"speedup_vs_{base_name}"] = base["median_s"] / row["median_s"]
    return out


# ---------------------------------------------------------------------------------------------
# 2. the paper-size U-Net


def section_unet(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from stemforge.unet3d import UNet3D

    profile, device, deadline = Profile(**spec["profile"]), spec["device"], spec["deadline"]
    dtype = getattr(torch, spec["dtype"])
    peak_tflops = spec["peak_tflops"]
    clock = Clock(device)
    torch.manual_seed(0)
    shape = latent_shape(profile)
    flops = forward_flops(profile)
    tokens = shape[1] * shape[2] * shape[3]
    with torch.device(device):
        model = UNet3D(unet_config(profile)).to(dtype)
    out: dict[str, Any] = {
        "preset": profile.unet_preset,
        "parameters": model.num_parameters(),
        "dtype": spec["dtype"],
        "weights": "random (seed 0)",
        "latent_shape_per_sample": list(shape),
        "attention_backend": model.config.attention_backend,
        "flops": {
            "forward_per_sample": flops,
            "fwd+bwd_per_sample": 3 * flops,
            "method": "torch.utils.flop_counter.FlopCounterMode on one forward at batch 1 (meta device, attention "
            "through the reference backend); forward+backward = 3x forward",
        },
        "tokens_per_sample": tokens,
        "token": "one latent position (C x T x F) of a clip's stem latents",
        "clip_seconds": profile.clip_seconds,
        "peak_tflops": peak_tflops,
        "largest_batch": {},
        "results": [],
    }
    emit(out)

    def make_step(mode: str, batch: int) -> Callable[[], None]:
        gen = torch.Generator(device=device).manual_seed(batch)
        x = torch.randn(batch, *shape, device=device, generator=gen)
        t = torch.randint(0, 1000, (batch,), device=device, generator=gen).float()
        cond = {"mix_latent": x.sum(1)}
        if mode == "fwd":
            model.eval()

            def step() -> None:
                with torch.no_grad():
                    model(x, t, cond)

        else:
            model.train()

            def step() -> None:
                model(x, t, cond).float().square().mean().backward()
                model.zero_grad(set_to_none=True)

        return step

    for mode in ("fwd", "fwd+bwd"):
        found = _largest_batch(
            lambda b, mode=mode: make_step(mode, b)(),
            lambda: model.zero_grad(set_to_none=True),
            profile.max_batch,
            device,
            deadline,
        )
        out["largest_batch"][mode] = found
        emit(out)
        batches = sorted({1, found["batch"]} if found["batch"] else {1})
        for batch in batches:
            row: dict[str, Any] = {"mode": mode, "batch": batch}
            if time.time() > deadline:
                row["skipped"] = "section deadline reached"
                out["results"].append(row)
                continue
            step = None
            try:
                step = make_step(mode, batch)
                base = reset_peak(device)
                times = measure(step, clock, profile, deadline)
                row["peak_mem_mib"] = peak_mib(device, base)
                row.update(summary(times))
                seconds = row["median_s"]
                model_flops = flops * batch * (3 if mode == "fwd+bwd" else 1)
                row.update(
                    {
                        "model_flops": model_flops,
                        "samples_per_s": batch / seconds,
                        "tokens_per_s": batch * tokens / seconds,
                        "audio_seconds_per_s": batch * profile.clip_seconds / seconds,
                        **mfu(model_flops, seconds, peak_tflops),
                    }
                )
            except Exception as err:
                row["error"] = _describe(err)
            del step
            model.zero_grad(set_to_none=True)
            free_memory()
            out["results"].append(row)
            emit(out)
    return out


def _largest_batch(
    run: Callable[[int], None], cleanup: Callable[[], None], limit: int, device: str, deadline: float
) -> dict[str, Any]:
    """Largest power-of-two batch (up to ``limit``) for which ``run(batch)`` does not run out of
    device memory: doubling from 1, catching ``torch.cuda.OutOfMemoryError`` and emptying the cache.
    A batch that fails otherwise (a kernel's size limit) also ends the search, with the message."""
    best, batch, stopped = 0, 1, f"limit {limit} reached"
    while batch <= limit:
        if time.time() > deadline:
            stopped = "section deadline reached"
            break
        failure = None
        try:
            run(batch)
            if device == "cuda":
                torch.cuda.synchronize()
        except torch.cuda.OutOfMemoryError:
            failure = f"out of memory at batch {batch}"
        except RuntimeError as err:
            failure = f"batch {batch} failed: {_describe(err)}"
        # Outside the except blocks: the traceback (and the activations its frames hold) is gone.
        cleanup()
        free_memory()
        if failure is not None:
            stopped = failure
            break
        best, batch = batch, batch * 2
    return {"batch": best, "stopped_by": stopped, "method": "doubling from 1 until out of memory"}


# ---------------------------------------------------------------------------------------------
# 3. one clip end to end


def build_pipeline(profile: Profile, device: str, dtype: torch.dtype) -> Any:
    """An untrained MultiTrackPipeline of the profile's size: random U-Net in ``dtype``, random
    MSG-LD codec (mel VAE + HiFi-GAN) in float32, the MSG-LD noise schedule."""
    from stemforge.codec import MelVAECodec, MelVAECodecConfig
    from stemforge.pipelines import MultiTrackPipeline
    from stemforge.samplers import NoiseSchedule
    from stemforge.unet3d import UNet3D

    torch.manual_seed(0)
    unet = UNet3D(unet_config(profile)).to(dtype)
    codec = MelVAECodec(MelVAECodecConfig.from_name(profile.codec_preset))
    pipe = MultiTrackPipeline(
        path=Path(f"<random {profile.unet_preset} + {profile.codec_preset} codec>"),
        unet=unet.eval().requires_grad_(False),
        codec=codec.eval().requires_grad_(False),
        schedule=NoiseSchedule.from_name("msgld"),
        prediction="epsilon",
        stems=unet.config.stems,
        mode="msgld",
        target=None,
        label=f"random {profile.unet_preset}",
        segment_seconds=profile.clip_seconds,
    )
    return pipe.to(torch.device(device))


class StageTimer:
    """Times a codec's ``encode`` and ``decode`` calls on the device timeline."""

    def __init__(self, codec: Any, clock: Clock) -> None:
        self.clock = clock
        self.marks: dict[str, list[tuple[Any, Any]]] = {"encode": [], "decode": []}
        for name in self.marks:
            setattr(codec, name, self._timed(name, getattr(codec, name)))

    def _timed(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = self.clock.mark()
            result = call(*args, **kwargs)
            self.marks[name].append((start, self.clock.mark()))
            return result

        return timed

    def take(self) -> dict[str, float]:
        spans = {name: sum(self.clock.seconds(a, b) for a, b in pairs) for name, pairs in self.marks.items()}
        for pairs in self.marks.values():
            pairs.clear()
        return spans


def section_end_to_end(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    import warnings

    profile, device, deadline = Profile(**spec["profile"]), spec["device"], spec["deadline"]
    dtype = getattr(torch, spec["dtype"])
    clock = Clock(device)
    pipe = build_pipeline(profile, device, dtype)
    rate = pipe.sample_rate
    num_samples = round(profile.clip_seconds * rate)
    mix = (0.1 * torch.randn(num_samples, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    timer = StageTimer(pipe.codec, clock)
    flops = forward_flops(profile)
    out: dict[str, Any] = {
        "task": f"MultiTrackPipeline.separate(method='cfg'): at w = {profile.guidance:g} the conditional and "
        "unconditional rows in one batched U-Net call per step, at w = 1 the conditional row alone",
        "clip_seconds": profile.clip_seconds,
        "num_samples": num_samples,
        "sample_rate": rate,
        "stems": list(pipe.stems),
        "unet": {"preset": profile.unet_preset, "dtype": spec["dtype"], "weights": "random (seed 0)"},
        "codec": {
            "preset": profile.codec_preset,
            "kind": "mel VAE + HiFi-GAN",
            "dtype": "float32",
            "weights": "random (seed 0)",
        },
        "stages": "encode = codec.encode of the mixture; decode = codec.decode of the stem latents (VAE decoder "
        "+ HiFi-GAN, all stems); sample = the rest of the wall time (the U-Net calls, the sampler, the "
        "pipeline's checks)",
        "input": "0.1 x standard normal noise (random weights make any input equivalent for timing)",
        "runs": {},
        "notes": [],
    }
    few = f"ddim-{profile.few_steps}-w1"
    runs = {
        few: {"sampler": "ddim", "steps": profile.few_steps, "eta": 1.0, "guidance": 1.0},
        f"ddim-{profile.ddim_steps}-cfg": {
            "sampler": "ddim",
            "steps": profile.ddim_steps,
            "eta": 1.0,
            "guidance": profile.guidance,
        },
    }

    def separate(options: dict[str, Any]) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe.separate(mix, rate, method="cfg", seed=0, allow_degenerate=True, **options)
        for warning in caught:
            # One note per kind of message (the figures inside differ from run to run).
            note = str(warning.message).splitlines()[0][:200]
            if not any(n[:60] == note[:60] for n in out["notes"]):
                out["notes"].append(note)

    # Warm-up: the few-step run (same shapes and kernels as every other run), untimed.
    separate(runs[few])
    clock.sync()
    timer.take()
    for name, options in runs.items():
        if time.time() > deadline:
            out["runs"][name] = {**options, "skipped": "section deadline reached"}
            continue
        rows = 1 if options["guidance"] == 1 else 2
        record: dict[str, Any] = {**options, "unet_rows_per_step": rows, "unet_calls": options["steps"]}
        sample_flops = options["steps"] * rows * flops
        record["unet_flops"] = sample_flops
        if spec["peak_tflops"]:
            record["unet_seconds_at_peak"] = sample_flops / (spec["peak_tflops"] * 1e12)
        repeats: list[dict[str, float]] = []
        base = reset_peak(device)
        for _ in range(profile.e2e_repeats):
            if repeats and time.time() + 1.3 * repeats[-1]["wall_s"] > deadline:
                record["stopped"] = "section deadline reached: fewer repeats"
                break
            clock.sync()
            wall0 = time.perf_counter()
            start = clock.mark()
            separate(options)
            end = clock.mark()
            total = clock.seconds(start, end)
            wall = time.perf_counter() - wall0
            stages = timer.take()
            repeats.append(
                {
                    "wall_s": wall,
                    "device_s": total,
                    "encode_s": stages["encode"],
                    "decode_s": stages["decode"],
                    "sample_s": total - stages["encode"] - stages["decode"],
                }
            )
            record["repeats"] = repeats
            record["median"] = {key: statistics.median(r[key] for r in repeats) for key in repeats[0]}
            record["peak_mem_mib"] = peak_mib(device, base)
            out["runs"][name] = record
            emit(out)
        out["runs"][name] = record
    return out


# ---------------------------------------------------------------------------------------------
# 4. a training step under DeepSpeed ZeRO-2


def section_train(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    profile, device, deadline = Profile(**spec["profile"]), spec["device"], spec["deadline"]
    if device != "cuda":
        # stemforge-train's CPU path: DeepSpeed's CPU accelerator, set before deepspeed is imported.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from stemforge.train.config import load_config
    from stemforge.train.strategy import make_fabric, resolve_accelerator, resolve_precision
    from stemforge.train.tasks import build_task

    batch = spec["train_batch"] or profile.train_batch
    overrides = [
        f"run.batch_size={batch}",
        "data.latent_cache=unused",
        "dist.devices=1",
        "dist.num_nodes=1",
        f"dist.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
    ]
    config = load_config(ROOT / profile.train_config, overrides)
    flops = forward_flops(profile)
    accelerator = resolve_accelerator(config.dist)
    out: dict[str, Any] = {
        "config": profile.train_config,
        "overrides": overrides,
        "engine": "lightning-fabric DeepSpeedStrategy built by stemforge.train.strategy.make_fabric (as "
        "stemforge-train fit does), one process",
        "zero_stage": config.dist.zero_stage,
        "precision": resolve_precision(config.dist, accelerator),
        "optimizer": "torch.optim.AdamW as DeepSpeed's client optimizer",
        "step": "task.loss (DDPM epsilon loss, 10% mixture dropout) + fabric.backward + optimizer.step + zero_grad",
        "batch": batch,
        "latent_shape_per_sample": list(latent_shape(profile)),
        "model_flops_per_step": 3 * flops * batch,
        "flops_note": "model FLOPs of forward+backward = 3x the FlopCounterMode forward count",
        "peak_tflops": spec["peak_tflops"],
    }
    emit(out)
    fabric = make_fabric(config.dist, config.optim, batch, 1)
    fabric.launch()
    fabric.seed_everything(0, verbose=False)
    task = build_task(config)
    with fabric.init_module():
        model = task.build_model()
    optim = config.optim
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, eps=optim.eps
    )
    model, optimizer = fabric.setup(model, optimizer)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    shape = latent_shape(profile)
    gen = torch.Generator().manual_seed(0)
    stems = torch.randn(batch, *shape, generator=gen)
    data = {"stems": stems.to(fabric.device), "mix": stems.sum(1).to(fabric.device)}
    clock = Clock(device)
    counter = iter(range(10**9))

    def step() -> None:
        loss, _ = task.loss(model, data, torch.Generator().manual_seed(next(counter)))
        fabric.backward(loss)
        optimizer.step()
        optimizer.zero_grad()

    base = reset_peak(device)
    step()
    out["peak_mem_mib"] = peak_mib(device, base)
    times = time_runs(step, clock, max(0, profile.warmup - 1), profile.train_steps, deadline)
    out.update(summary(times))
    out["samples_per_s"] = batch / out["median_s"]
    out.update(mfu(out["model_flops_per_step"], out["median_s"], spec["peak_tflops"]))
    return out


SECTION_FUNCTIONS: dict[str, Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], dict[str, Any]]] = {
    "attention": section_attention,
    "unet": section_unet,
    "end_to_end": section_end_to_end,
    "train": section_train,
}


# ---------------------------------------------------------------------------------------------
# Running the sections, each in its own process


def _describe(err: BaseException) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first[:300]}"


def _child(name: str, spec: dict[str, Any], messages: Any) -> None:
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    if spec["device"] == "cuda":
        torch.backends.cudnn.benchmark = spec["cudnn_benchmark"]
    try:
        result = SECTION_FUNCTIONS[name](
            spec, lambda partial: messages.put(("partial", json.loads(json.dumps(partial))))
        )
        messages.put(("done", result))
    except BaseException as err:
        messages.put(("error", {"error": _describe(err), "traceback": traceback.format_exc()[-3000:]}))


def run_section(
    name: str, spec: dict[str, Any], timeout: float, on_update: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """``SECTION_FUNCTIONS[name](spec)`` in a spawned process; partial results reach ``on_update`` as
    they come; the process is stopped after ``timeout`` seconds (its last partial result is kept)."""
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    spec = {**spec, "deadline": time.time() + timeout}
    proc = ctx.Process(target=_child, args=(name, spec, messages), daemon=True)
    start = time.monotonic()
    proc.start()
    latest: dict[str, Any] = {}
    status = None
    while status is None:
        try:
            kind, payload = messages.get(timeout=0.5)
        except queue_module.Empty:
            if not proc.is_alive():
                status = {
                    "status": "error",
                    "error": f"the section's process ended with exit code {proc.exitcode}",
                }
            elif time.monotonic() - start > timeout + 15:
                # The section checks its own deadline between measurements; this one did not return.
                reason = f"stopped after {timeout:.0f} s (the --budget-s share of this section)"
                status = (
                    {"status": "partial", "stopped": reason}
                    if latest
                    else {"status": "skipped", "skipped": reason}
                )
                proc.kill()
            continue
        if kind == "partial":
            latest = payload
            on_update({**latest, "status": "running", "wall_s": time.monotonic() - start})
        elif kind == "done":
            # "partial": the section met its deadline and skipped measurements (each says so).
            cut = "section deadline" in json.dumps(payload)
            latest, status = payload, {"status": "partial" if cut else "ok"}
        else:
            status = {"status": "error", **payload}
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(5)
    return {**latest, **status, "wall_s": time.monotonic() - start}


# ---------------------------------------------------------------------------------------------
# The report


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def assumed_peak(device_name: str, dtype: str, override: float | None) -> dict[str, Any]:
    if override is not None:
        return {"tflops": override, "dtype": dtype, "source": "--peak-tflops"}
    if dtype == "bfloat16":
        for fragment, tflops in BF16_DENSE_PEAK_TFLOPS:
            if fragment.lower() in device_name.lower():
                return {
                    "tflops": tflops,
                    "dtype": dtype,
                    "source": f"dense bf16 peak of an {fragment} (data sheet)",
                }
    return {"tflops": None, "dtype": dtype, "source": "unknown device or dtype: give --peak-tflops for MFU"}


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    for dist in (
        "triton",
        "pytorch-triton",
        "deepspeed",
        "lightning-fabric",
        "stemforge-kernels",
        "stemforge-unet3d",
        "stemforge-codec",
        "stemforge-samplers",
        "stemforge-pipelines",
        "stemforge-train",
    ):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def write_atomic(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on CPU (the test suite's run)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float32"],
        default=None,
        help="U-Net and attention dtype (default: bfloat16 on CUDA, float32 on CPU)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="wall-time budget of the whole run; sections that no longer fit are skipped",
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for MFU (default: table)"
    )
    parser.add_argument(
        "--train-batch", type=int, default=None, help="training batch (default: the config's, 8)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads in each section's process")
    parser.add_argument("--no-cudnn-benchmark", action="store_true", help="leave cuDNN's autotuner off")
    parser.add_argument(
        "--out", default=None, help="JSON path (default: benchmarks/gpu/results-<device>.json)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    device = args.device
    if device == "auto":
        device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    sections = [s for s in args.sections.split(",") if s]
    for name in sections:
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
    profile = TINY if args.tiny else PAPER
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = assumed_peak(device_name, dtype, args.peak_tflops)
    out = Path(args.out) if args.out else Path(__file__).with_name(f"results-{device_slug(device_name)}.json")

    report: dict[str, Any] = {
        "benchmark": "gpu",
        "format_version": FORMAT_VERSION,
        "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(["run.py", *argv]),
        "profile": dataclasses.asdict(profile),
        "device": device_name,
        "device_type": device,
        "dtype": dtype,
        "peak": peak,
        "versions": versions(),
        "machine": machine_info(device),
        "settings": {
            "cudnn_benchmark": device == "cuda" and not args.no_cudnn_benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        },
        "budget_s": args.budget_s,
        "timing": "median of the timed runs after warm-up; CUDA events on a GPU, perf_counter on CPU",
        "peak_mem_mib": "torch.cuda.max_memory_allocated above what was allocated before the measurement (null on CPU)",
        "sections": {name: {"status": "pending"} for name in SECTIONS},
        "complete": False,
    }
    for name in SECTIONS:
        if name not in sections:
            report["sections"][name] = {"status": "skipped", "skipped": "not in --sections"}
    write_atomic(out, report)

    spec = {
        "profile": dataclasses.asdict(profile),
        "device": device,
        "dtype": dtype,
        "peak_tflops": peak["tflops"],
        "train_batch": args.train_batch,
        "threads": args.threads,
        "cudnn_benchmark": not args.no_cudnn_benchmark,
    }
    reserve = RESERVE_FRACTION * args.budget_s
    for index, name in enumerate(sections):
        left = args.budget_s - (time.monotonic() - started)
        later = len(sections) - index - 1
        timeout = left - later * reserve
        if timeout < reserve:
            report["sections"][name] = {
                "status": "skipped",
                "skipped": f"--budget-s {args.budget_s:.0f}: {max(timeout, 0):.0f} s left for this section, "
                f"below the {reserve:.0f} s it needs",
            }
            write_atomic(out, report)
            print(_one_line(name, report["sections"][name]), flush=True)
            continue
        print(f"[{time.monotonic() - started:6.1f} s] {name}: up to {timeout:.0f} s", flush=True)

        def update(partial: dict[str, Any], name: str = name) -> None:
            report["sections"][name] = partial
            write_atomic(out, report)

        report["sections"][name] = run_section(name, spec, timeout, update)
        write_atomic(out, report)
        print(_one_line(name, report["sections"][name]), flush=True)
    report["elapsed_s"] = time.monotonic() - started
    report["complete"] = all(report["sections"][s].get("status") == "ok" for s in sections)
    write_atomic(out, report)
    print(f"[{report['elapsed_s']:6.1f} s] JSON: {out}", flush=True)
    return report


def _one_line(name: str, section: dict[str, Any]) -> str:
    status = section.get("status")
    if status not in ("ok", "partial"):
        reason = section.get("error") or section.get("skipped") or section.get("stopped")
        return f"  {name}: {status} ({reason})"
    try:
        text = _figures(name, section)
    except (KeyError, TypeError, ValueError):
        text = "see the JSON"
    return f"  {name} ({status}): {text}"


def _figures(name: str, section: dict[str, Any]) -> str:
    if name == "attention":
        rows = [
            r
            for r in section["speed"]
            if r["variant"] == section["candidate"] and "speedup_vs_sdpa-bias" in r
        ]
        ratios = ", ".join(f"{r['tokens']} {r['mode']} {r['speedup_vs_sdpa-bias']:.2f}x" for r in rows)
        ok = all(r.get("within_tolerance") for r in section["accuracy"])
        return f"within tolerance {ok}; {section['candidate']} vs sdpa-bias: {ratios}"
    if name == "unet":
        return ", ".join(
            f"{r['mode']} b{r['batch']} {r['median_s'] * 1e3:.1f} ms"
            for r in section["results"]
            if "median_s" in r
        )
    if name == "end_to_end":
        runs = section["runs"].items()
        return "per clip " + ", ".join(f"{k} {v['median']['wall_s']:.2f} s" for k, v in runs if "median" in v)
    return f"batch {section['batch']}, step {section['median_s']:.3f} s, MFU {section.get('mfu')}"


if __name__ == "__main__":
    main()

"""Encode / decode speed (x real time) and peak memory of stemforge's codecs.

Cases: ``clip4`` = a 10.24 s clip with 4 stems (1, 4, 163840) at 16 kHz (MSG-LD's training
example), ``clip1`` = one stem of it, ``stereo10s`` = 10.24 s of stereo, ``stereo3min`` = a 3-minute stereo file coded as 2 stems (1, 2, 2880000), which goes
through the chunked overlap-add path. Codecs: ``mel_vae:msgld`` (the MSG-LD VAE + HiFi-GAN at the
reference size), ``mel_vae:tiny``, ``waveform:base``, ``waveform:tiny``; weights are random (speed
and memory do not depend on their values).

Each (codec, case) runs in its own process so that its peak resident memory (``ru_maxrss``, CPU)
or ``torch.cuda.max_memory_allocated`` (GPU) is its own; the process's resident memory after
building the codec is reported as the baseline. Each timing is the median of ``--repeats`` runs
after ``--warmup`` untimed runs (CUDA events and synchronisation on GPU). x real time = audio
duration of the file / wall time (all stems of the file coded). On CPU the process's CPU time per
run is recorded too (``cpu_s_all``), which other processes on a shared machine disturb less.

    nice -n 10 hatch run bench:codec --codecs mel_vae:msgld waveform:base --cases clip4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

CASES = {
    "clip1": (1, 1, 163840),
    "clip4": (1, 4, 163840),
    "stereo10s": (1, 2, 163840),
    "stereo3min": (1, 2, 180 * 16000),
}


def build(spec: str):
    from stemforge.codec import MelVAECodec, MelVAECodecConfig, WaveformAutoencoderConfig, WaveformCodec

    kind, preset = spec.split(":")
    if kind == "mel_vae":
        return MelVAECodec(MelVAECodecConfig.from_name(preset))
    if kind == "waveform":
        return WaveformCodec(WaveformAutoencoderConfig.from_name(preset))
    raise SystemExit(f"unknown codec {spec!r}; use mel_vae:<preset> or waveform:<preset>")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(spec: str, case: str, device: str, warmup: int, repeats: int) -> dict:
    torch.manual_seed(0)
    codec = build(spec).eval().to(device)
    shape = CASES[case]
    wave = (0.1 * torch.randn(shape)).to(device)
    baseline = rss_mb()
    cuda = device.startswith("cuda")

    cpu_seconds: list[float] = []

    def timed(fn) -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu_seconds.append(time.process_time() - c0)
        return time.perf_counter() - t0

    outputs: list[torch.Tensor] = []
    with torch.inference_mode():
        for _ in range(warmup):
            codec.decode(codec.encode(wave))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        encode_times = [timed(lambda: outputs.append(codec.encode(wave))) for _ in range(repeats)]
        latent = outputs[-1]
        decode_times = [timed(lambda: codec.decode(latent)) for _ in range(repeats)]
    seconds = shape[-1] / codec.sample_rate
    result = {
        "codec": spec,
        "case": case,
        "shape": list(shape),
        "latent_shape": list(latent.shape),
        "audio_seconds": seconds,
        "parameters": sum(p.numel() for p in codec.parameters()),
        "encode_s_median": statistics.median(encode_times),
        "decode_s_median": statistics.median(decode_times),
        "encode_s_all": encode_times,
        "decode_s_all": decode_times,
        "encode_x_realtime": seconds / statistics.median(encode_times),
        "decode_x_realtime": seconds / statistics.median(decode_times),
        # CPU time of this process (all threads) per timed run: less sensitive than wall time to other load.
        "cpu_s_all": cpu_seconds,
        "warmup": warmup,
        "repeats": repeats,
        "baseline_rss_mb": baseline,
    }
    if cuda:
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=["mel_vae:msgld", "waveform:base"])
    parser.add_argument("--cases", nargs="+", default=["clip4", "stereo3min"], choices=sorted(CASES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/codec/bench_codec.json"))
    parser.add_argument("--worker", nargs=2, metavar=("CODEC", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.device, args.warmup, args.repeats)))
        return

    from stemforge.codec import __version__

    rows = []
    for spec in args.codecs:
        for case in args.cases:
            cmd = [sys.executable, __file__, "--worker", spec, case, "--device", args.device]
            cmd += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{spec} {case} failed:\n{done.stderr}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"{spec:16s} {case:11s} enc {r['encode_s_median']:8.2f} s ({r['encode_x_realtime']:6.2f}x) "
                f"dec {r['decode_s_median']:8.2f} s ({r['decode_x_realtime']:6.2f}x) "
                f"peak RSS {r['peak_rss_mb']:7.0f} MB (after build {r['baseline_rss_mb']:5.0f} MB)"
                + (f" peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""),
                flush=True,
            )
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "stemforge-codec": __version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

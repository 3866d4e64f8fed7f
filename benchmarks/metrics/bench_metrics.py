"""Benchmarks of stemforge-metrics on CPU: FAD embedding throughput (MSD_musicnn, VGGish) and SI-SDRi over a
3-minute 4-stem track, plus the Frechet distance itself at musicnn's embedding size.

Audio: the shared chorale fixture (tests/fixtures/audio/chorale_16k), tiled to the needed length.
Prints a table and writes JSON (machine, versions, shapes, median of timed runs after warm-up).

    hatch run bench:metrics [--repeats 5] [--out benchmarks/metrics/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchmetrics
from safetensors.torch import save_file

import stemforge.metrics
from stemforge.metrics import (
    MusicnnEmbedder,
    SISDRi,
    VGGishEmbedder,
    VGGishNet,
    frechet_distance,
    gaussian_stats,
)

ROOT = Path(__file__).resolve().parents[2]
AUDIO = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
STEMS = ("soprano", "alto", "tenor", "bass")


def timed(fn, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def tiled(seconds: float, rate: int = 16000) -> torch.Tensor:
    stems = np.stack([sf.read(AUDIO / f"{n}.flac", dtype="float32")[0] for n in STEMS])
    n = int(seconds * rate)
    reps = -(-n // stems.shape[1])
    return torch.from_numpy(np.tile(stems, (1, reps))[:, :n].copy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []

    # FAD embedding throughput: MSD_musicnn on 4 x 30 s clips (batch of 4).
    embedder = MusicnnEmbedder("max_pool")
    clips = tiled(30.0)  # (4, 480000)
    median, times = timed(lambda: embedder(clips), args.repeats)
    audio_seconds = clips.numel() / 16000
    rows.append(
        {
            "name": "musicnn embed (max_pool)",
            "shape": list(clips.shape),
            "median_s": median,
            "times_s": times,
            "audio_s_per_s": audio_seconds / median,
        }
    )

    # VGGish throughput with randomly initialised weights saved to a local file: the cost does not
    # depend on the weight values, and no real VGGish weights ship with stemforge.
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vggish-random.safetensors"
        save_file(
            {k: v for k, v in VGGishNet().state_dict().items() if not k.startswith("pca")}, str(weights)
        )
        vggish = VGGishEmbedder(weights)
    median, times = timed(lambda: vggish(clips), args.repeats)
    rows.append(
        {
            "name": "VGGish embed (random weights)",
            "shape": list(clips.shape),
            "median_s": median,
            "times_s": times,
            "audio_s_per_s": audio_seconds / median,
        }
    )

    # SI-SDRi, MSDM protocol, one 3-minute 4-stem track at 16 kHz (89 windows of 4 s, hop 2 s).
    references = tiled(180.0)
    estimates = references + 0.05 * torch.randn(references.shape)

    def sisdri() -> dict[str, float]:
        metric = SISDRi(STEMS, 16000)
        metric.update(estimates, references)
        return metric.compute()

    median, times = timed(sisdri, args.repeats)
    result = sisdri()
    rows.append(
        {
            "name": "SI-SDRi 3-min 4-stem track",
            "shape": list(references.shape),
            "median_s": median,
            "times_s": times,
            "audio_s_per_s": 180.0 / median,
            "num_windows": result["num_windows"],
        }
    )

    # Frechet distance alone at D = 753 (musicnn max_pool) from 2000-sample statistics.
    a, b = gaussian_stats(torch.randn(2000, 753)), gaussian_stats(torch.randn(2000, 753) + 0.1)
    median, times = timed(lambda: frechet_distance(a.mean, a.cov, b.mean, b.cov), args.repeats)
    rows.append({"name": "frechet_distance D=753", "shape": [753, 753], "median_s": median, "times_s": times})

    record = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            # Other processes share the machine; the 1-minute load average says how busy it was.
            "load_average_1m_end": os.getloadavg()[0],
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchmetrics": torchmetrics.__version__,
            "numpy": np.__version__,
            "stemforge-metrics": stemforge.metrics.__version__,
        },
        "repeats": args.repeats,
        "results": rows,
    }
    print(f"{'benchmark':32s} {'shape':>16s} {'median s':>10s} {'audio s / s':>12s}")
    for row in rows:
        rate = f"{row['audio_s_per_s']:.1f}" if "audio_s_per_s" in row else "-"
        print(f"{row['name']:32s} {tuple(row['shape'])!s:>16s} {row['median_s']:10.4f} {rate:>12s}")
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

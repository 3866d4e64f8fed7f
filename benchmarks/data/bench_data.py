"""Benchmarks of stemforge-data: SoundFont rendering speed, Slakh reader throughput, resampling.

    hatch run bench:data [--chorales 6] [--repeats 5] [--json benchmarks/data/results.json]

* render: JSB train chorales rendered by ``render_midi`` (TimGM6mb, 16 kHz, 4 stems, with the
  loudness normalisation), and ``render_jsb`` (the same plus writing the Slakh folder: FLAC stems,
  mix, MIDI files, metadata). Reported in seconds of audio (track length) per second of wall time.
* reader: ``SlakhDataset`` items (4 stems x 163,840 samples = 10.24 s at 16 kHz, the MSG-LD
  segment) over the rendered folder, evaluation order and training order (random shifts), in
  segments per second.
* resample: 60 s of noise from 44.1 kHz to 16 kHz (kaiser_best), seconds of audio per second.

Each figure is the median of ``--repeats`` timed runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from stemforge.data import RenderConfig, SlakhDataset, render_jsb, render_midi, resample
from stemforge.data.__about__ import __version__ as data_version
from stemforge.midi import JSB_STEMS, jsb_midi


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chorales", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    config = RenderConfig(sample_rate=16000, program_policy="keep")
    midis = [jsb_midi("train", i) for i in range(args.chorales)]
    rows = []

    def render_only():
        return [render_midi(m, config=config, seed=i, stem_names=JSB_STEMS) for i, m in enumerate(midis)]

    audio_seconds = sum(t.num_samples for t in render_only()) / 16000
    times = timed(render_only, args.repeats)
    rows.append(
        ("render_midi", f"{args.chorales} chorales, 4 stems, 16 kHz", audio_seconds, times, "audio s/s")
    )

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**6))

        def render_and_write():
            render_jsb(Path(tmp) / f"run{next(counter)}", "train", limit=args.chorales, config=config)

        times = timed(render_and_write, args.repeats)
        rows.append(
            (
                "render_jsb (+ write)",
                f"{args.chorales} chorales -> Slakh folder",
                audio_seconds,
                times,
                "audio s/s",
            )
        )

        root = Path(tmp) / "run0"
        for train in (False, True):
            ds = SlakhDataset(
                root, "train", stems=JSB_STEMS, group_by="stem_name", segment_samples=163840, train=train
            )

            def read_all(ds=ds):
                for i in range(len(ds)):
                    ds[i]

            times = timed(read_all, args.repeats)
            label = "SlakhDataset train" if train else "SlakhDataset eval"
            rows.append((label, f"{len(ds)} segments of 4 x 163840", len(ds), times, "segments/s"))

    noise = torch.randn(44100 * 60)
    times = timed(lambda: resample(noise, 44100, 16000), args.repeats)
    rows.append(("resample 44.1k->16k", "60 s mono, kaiser_best", 60.0, times, "audio s/s"))

    results = []
    print(f"{'benchmark':<24} {'shape':<36} {'median s':>9} {'throughput':>12}  unit")
    for name, shape, amount, times, unit in rows:
        median = statistics.median(times)
        results.append(
            {
                "name": name,
                "shape": shape,
                "amount": amount,
                "times_s": times,
                "median_s": median,
                "throughput": amount / median,
                "unit": unit,
            }
        )
        print(f"{name:<24} {shape:<36} {median:>9.3f} {amount / median:>12.1f}  {unit}")
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "soundfile": soundfile.__version__,
        "stemforge-data": data_version,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"machine": machine, "versions": versions, "repeats": args.repeats, "results": results}, indent=2
        )
    )
    print(f"machine: {machine}\nwritten {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How a codec's decoder treats a slightly wrong latent, as a diffusion model samples one: the true
stems of held-out tracks are encoded, Gaussian noise of ``sigma`` (in the scaled latent's units, which
have a standard deviation near 1) is added, and the decoded stems are compared with the truth.

Per stem and sigma: Mel MSE against the true stem, RMS level, and the spectral-profile distances of
benchmarks/insert/eval_demo_audio.py (the log mel averaged over time, against the mean profile of
the test stems of each name): whether the decoded stem still has its own instrument's spectrum
(``own`` below ``nearest other``). Each codec folder (``Codec.save`` format) is measured on the same
clips and the same noise.

    OMP_NUM_THREADS=1 hatch run python benchmarks/codec/latent_noise.py CODEC [CODEC ...] \
        --corpus runs/audio-demo/corpus/test --out benchmarks/codec/latent_noise.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "insert"))
from bench_common import machine_info
from eval_demo_audio import STEMS, Profiles, read_track, rms_db

from stemforge.codec import load_codec


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("codecs", type=Path, nargs="+", help="codec folders (Codec.save format)")
    parser.add_argument("--corpus", type=Path, required=True, help="Slakh-format test folder")
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--offset", type=float, default=2.0)
    parser.add_argument("--sigmas", default="0,0.1,0.3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tracks = sorted(p for p in args.corpus.iterdir() if (p / "stems").is_dir())[: args.tracks]
    truth = torch.stack([read_track(t, args.offset, args.seconds) for t in tracks])
    profiles = Profiles(truth)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    started = time.time()
    result: dict = {
        "command": "python benchmarks/codec/latent_noise.py " + " ".join(sys.argv[1:]),
        "tracks": [t.name for t in tracks],
        "seconds": args.seconds,
        "offset": args.offset,
        "codecs": {},
    }
    for folder in args.codecs:
        codec = load_codec(folder).eval()
        rows: dict = {}
        with torch.no_grad():
            latent = codec.encode(truth)
            for sigma in sigmas:
                noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(args.seed))
                decoded = codec.decode(latent + sigma * noise)[..., : truth.shape[-1]]
                per_stem = {}
                for i, stem in enumerate(STEMS):
                    dist = [
                        sum(profiles.distances(decoded[k, i])[j] for k in range(len(tracks))) / len(tracks)
                        for j in range(len(STEMS))
                    ]
                    mel_mse = float((profiles.mel(decoded[:, i]) - profiles.mel(truth[:, i])).square().mean())
                    per_stem[stem] = {
                        "mel_mse": mel_mse,
                        "rms_db": rms_db(decoded[:, i]),
                        "profile_distance_own": dist[i],
                        "profile_distance_nearest_other": min(d for j, d in enumerate(dist) if j != i),
                    }
                rows[str(sigma)] = per_stem
                print(
                    folder,
                    sigma,
                    {s: round(v["profile_distance_own"], 2) for s, v in per_stem.items()},
                    flush=True,
                )
        result["codecs"][str(folder)] = rows
    result["wall_seconds"] = round(time.time() - started, 1)
    result["machine"] = machine_info("cpu")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""What a pipeline's U-Net can denoise in its codec's latent space, and what the codec makes of the rest.

For held-out test tracks (a Slakh-format folder), the true stems are encoded by the pipeline's codec
(scaled latents, as the U-Net sees them), noised to each ``--timesteps`` value and replaced by the
U-Net's unconditional x0-prediction (the mixture dropped, as in total generation and arrangement),
which is what the sampler's final steps leave. For each timestep the script reports:

- per stem, the x0-prediction's error (std, in latent units; the latents have std about 1);
- the error's power over the noise's power in five bands of latent-time frequency (1 = nothing
  removed), so whether the U-Net removes the noise from the slow or the fast part of the latents;
- the decoded stems' level and their spectral-profile distances (time-averaged log mel, as
  ``eval_demo_audio.py`` measures generated stems) to their own stem's test profile and to the
  nearest other stem's, with how many tracks are closest to their own (timestep 0 is the codec's
  round trip of the true latents).

and, for the true latents, the share of their power in the same five bands (a white latent puts
0.0625 / 0.0625 / 0.125 / 0.25 / 0.5 there). ``--codec`` decodes with another codec folder that has
the pipeline's encoder (a decoder trained further with the encoder frozen).

    OMP_NUM_THREADS=1 hatch run python benchmarks/insert/latent_denoising.py \\
        --checkpoint apps/insert/src/stemforge/insert/checkpoints/demo-audio \\
        --corpus runs/audio-demo/corpus-tsf/test --out benchmarks/insert/latent_denoising_shipped.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import pairwise
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info
from eval_demo_audio import Profiles, read_track, rms_db

#: Band edges as fractions of the latent-time Nyquist frequency.
BAND_EDGES = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


def band_powers(x: Tensor) -> Tensor:
    """Power of ``x`` (..., T, F) along T summed in the :data:`BAND_EDGES` bands, averaged over the rest."""
    spectrum = torch.fft.rfft(x.float(), dim=-2).abs().pow(2)
    bins = spectrum.shape[-2]
    spectrum = spectrum.movedim(-2, 0).reshape(bins, -1).mean(-1)
    edges = [round(e * (bins - 1)) for e in BAND_EDGES]
    edges[-1] = bins
    return torch.stack([spectrum[a:b].sum() for a, b in pairwise(edges)])


def profile_summary(profiles: Profiles, decoded: Tensor, stems: tuple[str, ...]) -> dict[str, dict]:
    """Per stem: level (dBFS RMS over the tracks), the mean over tracks of the distance to its own
    test profile and of the distance to the nearest other stem's (nearest per track; eval_demo_audio.py
    reports the smallest of the per-stem means instead), and how many tracks are closest to their own."""
    out = {}
    for i, stem in enumerate(stems):
        rows = [profiles.distances(decoded[b, i]) for b in range(decoded.shape[0])]
        own = sum(r[i] for r in rows) / len(rows)
        other = sum(min(r[j] for j in range(len(stems)) if j != i) for r in rows) / len(rows)
        closest = sum(min(range(len(stems)), key=lambda j, r=r: r[j]) == i for r in rows)
        out[stem] = {
            "rms_db": round(rms_db(decoded[:, i]), 2),
            "profile_distance_own": round(own, 3),
            "profile_distance_nearest_other": round(other, 3),
            "closest_to_own_stem": f"{closest}/{len(rows)}",
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a multitrack pipeline folder")
    parser.add_argument("--corpus", type=Path, required=True, help="Slakh-format test folder")
    parser.add_argument("--codec", type=Path, default=None, help="decode with this codec folder instead")
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--offset", type=float, default=2.0)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[0, 20, 42, 100, 200, 400])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from stemforge.codec import load_codec
    from stemforge.pipelines import MultiTrackPipeline
    from stemforge.pipelines.sampling import unconditional
    from stemforge.samplers import x0_and_eps

    tracks = sorted(p for p in args.corpus.iterdir() if (p / "stems").is_dir())[: args.tracks]
    if len(tracks) < args.tracks:
        sys.exit(f"--corpus {args.corpus}: {len(tracks)} tracks, fewer than --tracks {args.tracks}")
    pipe = MultiTrackPipeline.from_pretrained(args.checkpoint)
    decoder = load_codec(args.codec) if args.codec else pipe.codec
    stems = tuple(pipe.stems)
    references = torch.stack([read_track(t, args.offset, args.seconds) for t in tracks])
    frames = references.shape[-1] // pipe.codec.hop_length
    frames -= frames % pipe.unet.config.downsample_factor  # the U-Net halves T
    references = references[..., : frames * pipe.codec.hop_length]
    profiles = Profiles(references)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    with torch.no_grad():
        z0 = pipe.codec.encode(references)
        signal = band_powers(z0)
        result: dict = {
            "command": "python benchmarks/insert/latent_denoising.py " + " ".join(sys.argv[1:]),
            "checkpoint": str(args.checkpoint),
            "codec": str(args.codec) if args.codec else "the pipeline's",
            "tracks": [t.name for t in tracks],
            "latent_shape": list(z0.shape[1:]),
            "band_edges_of_nyquist": list(BAND_EDGES),
            "true_latent_power_share": [round(float(v), 4) for v in signal / signal.sum()],
            "timesteps": {},
        }
        for step in args.timesteps:
            if step == 0:
                x0, ratio = z0, None
            else:
                alpha_bar = pipe.schedule.alphas_cumprod[step].float()
                alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
                noisy = alpha * z0 + sigma * torch.randn(z0.shape, generator=generator)
                t = torch.full((z0.shape[0],), float(step))
                output = pipe.unet(noisy, t, unconditional(pipe, noisy)).float()
                x0, _ = x0_and_eps(output, noisy, alpha, sigma, pipe.prediction)
                ratio = band_powers(x0 - z0) / band_powers(noisy / alpha - z0)
            decoded = decoder.decode(x0)
            entry = {
                "x0_error_std": {s: round(float((x0 - z0)[:, i].std()), 4) for i, s in enumerate(stems)},
                "error_over_noise_power_by_band": None
                if ratio is None
                else [round(float(v), 3) for v in ratio],
                "decoded": profile_summary(profiles, decoded, stems),
            }
            result["timesteps"][str(step)] = entry
            shown = ", ".join(
                f"{s} {v['profile_distance_own']:.2f}/{v['profile_distance_nearest_other']:.2f}"
                for s, v in entry["decoded"].items()
            )
            print(f"t {step}: error {entry['x0_error_std']}; own/other {shown}", flush=True)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = machine_info("cpu")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

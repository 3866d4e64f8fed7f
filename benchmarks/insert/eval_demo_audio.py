"""What the embedded demonstration audio model does on held-out rendered chorales, through the
`stemforge-insert` commands exactly as a user runs them.

Data: ``--tracks`` test chorales of a Slakh-format folder rendered like the training corpus
(`stemforge-train data render --source jsb --split test --programs soprano=0,alto=25,tenor=48,bass=33`),
``--seconds`` of each from ``--offset``; the mix is the sum of the stems.

- separation (`separate --method cfg|dirac|gaussian`): per-stem SI-SDRi under MSDM's protocol
  (stemforge-metrics, 4 s windows every 2 s); the mixture/S baseline scores 0 dB by construction
  (SI-SDR is scale-invariant), and it is computed here all the same;
- generation (`generate`, one clip per track and seed) and insertion (`arrange` with the three
  other stems given, for every stem of every track): each produced stem's RMS level against the
  test stems of the same name, and its spectral profile (time-averaged log mel) distance to the
  test stems of its own name and of the other names: a stem sounds like its instrument when the
  first is the smallest;
- every output passes the commands' degeneracy checks (they would stop with an error otherwise).

    OMP_NUM_THREADS=2 hatch run python benchmarks/insert/eval_demo_audio.py \
        --corpus runs/audio-demo/corpus/test --out benchmarks/insert/demo_audio.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from stemforge.codec import MelConfig, MelFrontEnd
from stemforge.insert.cli import main as insert_cli
from stemforge.metrics import si_sdr, si_sdri_windows

STEMS = ("soprano", "alto", "tenor", "bass")


def read_track(folder: Path, offset: float, seconds: float) -> torch.Tensor:
    """(S, N) stems of a Slakh-format track (``metadata.yaml`` names each ``stems/Sxx.flac``)."""
    import yaml

    meta = yaml.safe_load((folder / "metadata.yaml").read_text())["stems"]
    names = {v["stem_name"]: k for k, v in meta.items()}
    waves = []
    for stem in STEMS:
        path = folder / "stems" / f"{names[stem]}.flac"
        info = sf.info(path)
        start = round(offset * info.samplerate)
        data, _ = sf.read(path, dtype="float32", start=start, frames=round(seconds * info.samplerate))
        waves.append(torch.from_numpy(data))
    return torch.stack(waves)


def write(path: Path, wave: torch.Tensor, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.numpy(), rate, subtype="FLOAT")
    return path


def read(path: Path) -> torch.Tensor:
    data, _ = sf.read(path, dtype="float32")
    return torch.from_numpy(data)


def cli(*args: str) -> str | None:
    """Run a command; None when it succeeded, else its error message (a refused degenerate output is a
    result to record, not a reason to stop)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = insert_cli([*args, "--quiet", "--overwrite"])
    return None if rc == 0 else err.getvalue().strip() or f"exited {rc}"


def rms_db(wave: torch.Tensor) -> float:
    return float(20 * torch.log10(wave.double().square().mean().sqrt().clamp_min(1e-8)))


class Profiles:
    """Time-averaged log-mel profile of audio, and distances to the test stems' profiles."""

    def __init__(self, references: torch.Tensor) -> None:
        self.mel = MelFrontEnd(MelConfig.from_name("msgld"))
        # (tracks, S, N) -> per stem name: the mean profile over the test tracks
        self.reference = torch.stack([self.profile(references[:, s]).mean(0) for s in range(len(STEMS))])

    def profile(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n_mels): the log mel averaged over time (MelFrontEnd gives (B, frames, n_mels))."""
        with torch.no_grad():
            return self.mel(wave.reshape(-1, wave.shape[-1])).mean(-2)

    def distances(self, wave: torch.Tensor) -> list[float]:
        return self._distances(self.profile(wave)[0], self.reference)

    def shape_distances(self, wave: torch.Tensor) -> list[float]:
        """The same distances with each profile's mean over the mel bands removed: the spectrum's
        shape whatever its loudness (which the RMS level reports on its own)."""
        profile = self.profile(wave)[0]
        return self._distances(
            profile - profile.mean(), self.reference - self.reference.mean(-1, keepdim=True)
        )

    @staticmethod
    def _distances(profile: torch.Tensor, references: torch.Tensor) -> list[float]:
        return [float((profile - ref).square().mean()) for ref in references]


def reference_matrix(distances, references: torch.Tensor) -> list[list[float]]:
    """Row i, column j: the mean distance of the test stems of name i to the profile of name j."""
    n = len(references)
    return [
        [sum(distances(r[i])[j] for r in references) / n for j in range(len(STEMS))]
        for i in range(len(STEMS))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, required=True, help="Slakh-format test folder")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--offset", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sampler", default=None, help="the commands' --sampler (default: theirs)")
    parser.add_argument("--eta", type=float, default=None, help="the commands' --eta (default: theirs)")
    parser.add_argument("--checkpoint", default=None, help="default: the embedded demonstration model")
    parser.add_argument("--parts", default="separate,generate,arrange")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    tracks = sorted(p for p in args.corpus.iterdir() if (p / "stems").is_dir())[: args.tracks]
    if len(tracks) < args.tracks:
        raise SystemExit(f"{args.corpus}: {len(tracks)} tracks, fewer than --tracks {args.tracks}")
    references = torch.stack([read_track(t, args.offset, args.seconds) for t in tracks])
    profiles = Profiles(references)
    common = ["--steps", str(args.steps)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    common += ["--sampler", args.sampler] if args.sampler else []
    common += ["--eta", str(args.eta)] if args.eta is not None else []
    result: dict = {
        "command": "python benchmarks/insert/eval_demo_audio.py " + " ".join(sys.argv[1:]),
        "tracks": [t.name for t in tracks],
        "seconds": args.seconds,
        "offset": args.offset,
        "steps": args.steps,
        "sampler": args.sampler or "the commands' default",
        "eta": args.eta,
        "reference_rms_db": {
            s: sum(rms_db(r[i]) for r in references) / len(tracks) for i, s in enumerate(STEMS)
        },
        "reference_shape_distance": reference_matrix(profiles.shape_distances, references),
        "reference_profile_distance": reference_matrix(profiles.distances, references),
    }
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "separate" in parts:
            separation: dict = {}
            baseline = [
                si_sdri_windows(r.sum(0, keepdim=True).expand_as(r) / len(STEMS), r, 16000).values
                for r in references
            ]
            separation["mixture/S baseline"] = {
                s: float(torch.cat(baseline)[:, i].mean()) for i, s in enumerate(STEMS)
            }
            for method in ("cfg", "dirac", "gaussian"):
                rows, errors = [], []
                for k, ref in enumerate(references):
                    mix = write(tmp / f"mix{k}.wav", ref.sum(0))
                    out = tmp / f"sep-{method}-{k}"
                    args_ = ("separate", str(mix), "--method", method, "--seed", str(k), "--out", str(out))
                    error = cli(*args_, *common)
                    if error:
                        errors.append({"track": k, "error": error})
                        continue
                    est = torch.stack([read(out / f"{s}.wav") for s in STEMS])
                    rows.append(si_sdri_windows(est, ref, 16000).values)
                separation[method] = {"refused_as_degenerate": errors}
                if rows:
                    values = torch.cat(rows)
                    separation[method].update({s: float(values[:, i].mean()) for i, s in enumerate(STEMS)})
                    separation[method]["mean"] = float(values.mean())
                    separation[method]["windows"] = int(values.shape[0])
                shown = {k: v for k, v in separation[method].items() if k != "refused_as_degenerate"}
                print(method, shown, f"{len(errors)} refused", flush=True)
            result["separation_si_sdri_db"] = separation
        if "generate" in parts:
            rows = []
            for k in range(len(tracks)):
                out = tmp / f"gen-{k}"
                error = cli(
                    "generate", "--seconds", str(args.seconds), "--seed", str(k), "--out", str(out), *common
                )
                if error:
                    rows.append({"seed": k, "error": error})
                    continue
                for s in STEMS:
                    wave = read(out / f"{s}.wav")
                    rows.append(
                        {
                            "stem": s,
                            "seed": k,
                            "rms_db": rms_db(wave),
                            "distances": profiles.distances(wave),
                            "shape_distances": profiles.shape_distances(wave),
                        }
                    )
            result["generate"] = summarise(rows)
            print("generate", result["generate"]["summary"], flush=True)
        if "arrange" in parts:
            rows = []
            for k, ref in enumerate(references):
                for i, s in enumerate(STEMS):
                    given = ",".join(
                        f"{o}={write(tmp / f'in{k}' / f'{o}.wav', ref[j])}"
                        for j, o in enumerate(STEMS)
                        if o != s
                    )
                    out = tmp / f"arr-{k}-{s}"
                    error = cli("arrange", "--given", given, "--seed", str(k), "--out", str(out), *common)
                    if error:
                        rows.append({"stem": s, "track": k, "error": error})
                        continue
                    wave = read(out / f"{s}.wav")
                    n = min(wave.shape[-1], ref.shape[-1])
                    rows.append(
                        {
                            "stem": s,
                            "track": k,
                            "rms_db": rms_db(wave),
                            "distances": profiles.distances(wave),
                            "shape_distances": profiles.shape_distances(wave),
                            "si_sdr_to_truth_db": float(
                                si_sdr(wave[None, :n].double(), ref[i : i + 1, :n].double())[0]
                            ),
                        }
                    )
            result["arrange"] = summarise(rows)
            print("arrange", result["arrange"]["summary"], flush=True)
    result["wall_seconds"] = round(time.time() - started, 1)
    result["machine"] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_at_end": os.getloadavg(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def _closest(mine: list[dict], i: int, key: str) -> tuple[float, float, str]:
    """Over the rows of stem ``i``: the mean ``key`` distance to its own stem, the smallest mean
    distance to another stem, and in how many rows its own stem is the closest."""
    mean = [sum(r[key][j] for r in mine) / len(mine) for j in range(len(STEMS))]
    wins = sum(r[key][i] < min(d for j, d in enumerate(r[key]) if j != i) for r in mine)
    return mean[i], min(d for j, d in enumerate(mean) if j != i), f"{wins}/{len(mine)}"


def summarise(rows: list[dict]) -> dict:
    summary: dict = {"refused_as_degenerate": sum("error" in r for r in rows)}
    for i, s in enumerate(STEMS):
        mine = [r for r in rows if r.get("stem") == s and "error" not in r]
        if not mine:
            continue
        own, other, wins = _closest(mine, i, "distances")
        summary[s] = {
            "rms_db": sum(r["rms_db"] for r in mine) / len(mine),
            "profile_distance_own": own,
            "profile_distance_nearest_other": other,
            "closest_to_own_stem": wins,
        }
        if "shape_distances" in mine[0]:
            own, other, wins = _closest(mine, i, "shape_distances")
            summary[s]["shape_distance_own"] = own
            summary[s]["shape_distance_nearest_other"] = other
            summary[s]["closest_to_own_stem_shape"] = wins
        if "si_sdr_to_truth_db" in mine[0]:
            summary[s]["si_sdr_to_truth_db"] = sum(r["si_sdr_to_truth_db"] for r in mine) / len(mine)
    return {"summary": summary, "rows": rows}


if __name__ == "__main__":
    main()

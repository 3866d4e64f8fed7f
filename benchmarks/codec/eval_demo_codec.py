"""Held-out round trip of an exported waveform autoencoder against Griffin-Lim from the same mel.

Clips: the first ``--seconds`` of every stem of every track under ``--heldout`` (Slakh layout),
skipping stems quieter than -50 dBFS RMS there. Figures (lower is better): Mel MSE (natural-log
mel, MSG-LD's front end) and MR-STFT (spectral convergence + log-magnitude L1 over FFT sizes
2048/1024/512/256), for the codec, for 32 Griffin-Lim iterations from the true mel (pseudo-inverse
filterbank) and for silence. Also: a 2 s 440 Hz sine (amplitude 0.3) through the codec, its
dominant frequency, level and mel correlation, and the chorale fixtures' mixes (a held-out chorale
in the demonstration corpus's timbres, and one in wind timbres the codec never heard). Writes JSON.

    OMP_NUM_THREADS=2 hatch run python benchmarks/codec/eval_demo_codec.py runs/audio-demo/codec-ae-6000 \
        --heldout runs/audio-demo/corpus/test --out benchmarks/codec/eval_demo_codec_step6000.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import soundfile as sf
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_codec import griffin_lim, mr_stft

from stemforge.codec import MelConfig, MelFrontEnd, WaveformAutoencoderConfig, WaveformCodec

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio"


def held_out_clips(folder: Path, samples: int) -> torch.Tensor:
    clips = []
    for path in sorted(folder.glob("*/stems/*.flac")):
        data, rate = sf.read(path, dtype="float32", always_2d=True, frames=samples)
        if rate != 16000:
            raise SystemExit(f"{path}: {rate} Hz; the held-out stems must be rendered at 16000 Hz")
        if data.shape[0] < samples:
            continue
        clip = torch.from_numpy(data.mean(1))
        if clip.square().mean().sqrt() > 10 ** (-50 / 20):
            clips.append(clip)
    if not clips:
        raise SystemExit(f"{folder}: no stem of {samples} samples at 16 kHz")
    return torch.stack(clips)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def dominant_hz(wave: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wave * torch.hann_window(wave.shape[-1])).abs()
    return float(spectrum.argmax()) * rate / wave.shape[-1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("export", type=Path, help="a `stemforge-train export` folder of a waveform_ae run")
    parser.add_argument("--heldout", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=2.56)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    meta = json.loads((args.export / "config.json").read_text())
    codec = WaveformCodec(WaveformAutoencoderConfig.from_dict(meta["model_config"]))
    codec.autoencoder.load_state_dict(load_file(args.export / "model.safetensors"))
    codec.eval()
    mel_cfg = MelConfig.from_name("msgld")
    mel = MelFrontEnd(mel_cfg)
    samples = round(args.seconds * 16000) // codec.hop_length * codec.hop_length
    clips = held_out_clips(args.heldout, samples)
    start = time.perf_counter()
    with torch.no_grad():
        recon = codec.decode(codec.encode(clips[:, None], sample_rate=16000))[:, 0, :samples]
        log_mel = mel(clips)
        rows = {
            "waveform autoencoder decode(encode(x))": recon,
            "baseline: Griffin-Lim (32 it.) from mel(x)": griffin_lim(log_mel, mel.filters, mel_cfg)[
                :, :samples
            ],
            "baseline: silence": torch.zeros_like(clips),
        }
        table = {}
        for name, pred in rows.items():
            pred_mel = mel(pred)
            table[name] = {
                "mel_mse": float((pred_mel - log_mel).square().mean()),
                "mr_stft": mr_stft(pred, clips),
                # The correlation with a constant (silent) prediction is undefined: null, not 0.
                "mel_correlation": correlation(pred_mel, log_mel) if pred.abs().max() > 0 else None,
            }
        t = torch.arange(32000) / 16000
        sine = (0.3 * torch.sin(2 * torch.pi * 440 * t))[None]
        sine_out = codec.decode(codec.encode(sine[:, None], sample_rate=16000))[:, 0, :32000]
        sine_row = {
            "input_hz": dominant_hz(sine[0], 16000),
            "output_hz": dominant_hz(sine_out[0], 16000),
            "output_std": float(sine_out.std()),
            "input_std": float(sine.std()),
            "mel_correlation": correlation(mel(sine_out), mel(sine)),
        }
        chorale = {}
        for name in ("chorale_demo_16k", "chorale_16k"):
            wave = torch.from_numpy(sf.read(FIXTURES / name / "mix.flac", dtype="float32")[0])
            wave = wave[: wave.shape[-1] // codec.hop_length * codec.hop_length][None]
            out = codec.decode(codec.encode(wave[:, None], sample_rate=16000))[:, 0, : wave.shape[-1]]
            chorale[name] = {
                "mel_correlation": correlation(mel(out), mel(wave)),
                "mel_mse": float((mel(out) - mel(wave)).square().mean()),
                "mr_stft": mr_stft(out, wave),
            }
    result = {
        "command": " ".join(sys.argv),
        "export": str(args.export),
        "clips": int(clips.shape[0]),
        "seconds": args.seconds,
        "table": table,
        "sine_440": sine_row,
        "chorale_fixture_mix": chorale,
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "load_average_at_end": os.getloadavg(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

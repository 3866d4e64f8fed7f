"""Short CPU training run of the codecs on rendered chorales, evaluated on held-out clips.

Trains, from scratch and for a fixed number of steps each, (1) a small AutoencoderKL on log-mels,
(2) a small HiFi-GAN V1 generator with its MPD + MSD discriminators, (3) a small waveform
autoencoder, using only stemforge.codec's step functions. Then it compares, on held-out clips,
each reconstruction with a trivial baseline:

- VAE: mel MSE (log-mel, MSG-LD's Mel-MSE) of the reconstruction vs. the mel of a silent signal
  and vs. the training set's mean mel frame;
- vocoder: mel MSE and multi-resolution STFT distance (spectral convergence + log-magnitude L1 at
  FFT sizes 2048/1024/512/256, Yamamoto et al. 2020) of vocoder(mel(x)) vs. x, against 32
  iterations of Griffin-Lim from the same mel (pseudo-inverse of the mel filterbank) and silence;
- the whole MSG-LD chain decode(encode(x)) and the waveform autoencoder, against silence.

Training data: Slakh-format folders rendered by ``stemforge-train data render`` (``--train``);
held-out: other folders (``--heldout``) plus the repository's rendered chorale fixture.
Prints a table and writes JSON. Example (see RESULTS.md):

    nice -n 10 hatch run python benchmarks/codec/train_codec.py --train /tmp/jsb16k/train \
        --heldout /tmp/jsb16k/test --out benchmarks/codec/train_codec.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stemforge.codec import (
    AutoencoderKLConfig,
    HiFiGANConfig,
    MelConfig,
    MelVAECodec,
    MelVAECodecConfig,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    WaveformAutoencoderConfig,
    WaveformCodec,
    __version__,
    estimate_scale_factor,
    multi_scale_spectral_loss,
    vae_step,
    vocoder_step,
    waveform_autoencoder_step,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
EVAL_FFT = (2048, 1024, 512, 256)


def read_tracks(folder: Path) -> list[torch.Tensor]:
    """Every stem file under ``folder`` (Slakh layout ``*/stems/S*.flac`` or flat ``*.flac``) at 16 kHz."""
    files = sorted(folder.glob("*/stems/*.flac")) or sorted(
        f for f in folder.glob("*.flac") if f.stem != "mix"
    )
    stems = []
    for path in files:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != 16000:
            raise SystemExit(f"{path}: {rate} Hz, expected 16000")
        stems.append(torch.from_numpy(data.mean(1)))
    if not stems:
        raise SystemExit(f"{folder}: no stems found")
    return stems


def crops(stems: list[torch.Tensor], length: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """``batch`` random non-silent crops of ``length`` samples."""
    out = []
    while len(out) < batch:
        stem = stems[int(torch.randint(len(stems), (1,), generator=gen))]
        start = int(torch.randint(stem.shape[0] - length, (1,), generator=gen))
        piece = stem[start : start + length]
        if piece.abs().max() > 1e-3:
            out.append(piece)
    return torch.stack(out)


def mr_stft(pred: torch.Tensor, ref: torch.Tensor) -> float:
    losses = multi_scale_spectral_loss(pred, ref, EVAL_FFT)
    return float(losses["convergence"] + losses["log_magnitude"])


def griffin_lim(
    log_mel: torch.Tensor, filters: torch.Tensor, cfg: MelConfig, iters: int = 32
) -> torch.Tensor:
    """Griffin and Lim (1984) from a log-mel (B, T, M): pseudo-inverse filterbank, then iterate."""
    magnitude = torch.clamp(torch.linalg.pinv(filters) @ log_mel.exp().transpose(1, 2), min=0.0)
    window = torch.hann_window(cfg.win_length)
    gen = torch.Generator().manual_seed(0)
    phase = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=gen))
    length = log_mel.shape[1] * cfg.hop_length
    kwargs = {
        "n_fft": cfg.n_fft,
        "hop_length": cfg.hop_length,
        "win_length": cfg.win_length,
        "window": window,
    }
    for _ in range(iters):
        wave = torch.istft(magnitude * phase, length=length, **kwargs)
        spec = torch.stft(wave, return_complex=True, **kwargs)[..., : magnitude.shape[-1]]
        phase = torch.exp(1j * spec.angle())
    return torch.istft(magnitude * phase, length=length, **kwargs).clamp(-1, 1)


def run_steps(name: str, steps: int, step_fn, key: str) -> dict:
    history, start = [], time.perf_counter()
    for i in range(steps):
        logs = step_fn(i)
        history.append(logs)
        if i % max(1, steps // 5) == 0 or i == steps - 1:
            print(f"  {name} step {i:4d} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()), flush=True)
    tenth = max(1, steps // 10)
    series = [h[key] for h in history]
    return {
        "steps": steps,
        "seconds": round(time.perf_counter() - start, 1),
        "monitored": key,
        "first_10pct_mean": float(np.mean(series[:tenth])),
        "last_10pct_mean": float(np.mean(series[-tenth:])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--heldout", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/codec/train_codec.json"))
    parser.add_argument("--vae-steps", type=int, default=300)
    parser.add_argument("--vocoder-steps", type=int, default=300)
    parser.add_argument("--waveform-steps", type=int, default=300)
    parser.add_argument("--eval-seconds", type=float, default=5.12)
    parser.add_argument("--parts", nargs="+", choices=["mel", "waveform"], default=["mel", "waveform"])
    args = parser.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    train = read_tracks(args.train)
    heldout_stems = read_tracks(args.heldout) + read_tracks(FIXTURE)
    eval_len = int(args.eval_seconds * 16000) // 640 * 640
    heldout = torch.stack([s[:eval_len] for s in heldout_stems if s.shape[0] >= eval_len])
    print(
        f"train: {len(train)} stems, {sum(s.shape[0] for s in train) / 16000:.0f} s; held-out: {heldout.shape[0]} clips of {eval_len / 16000:.2f} s"
    )

    config = MelVAECodecConfig(
        MelConfig(),
        AutoencoderKLConfig(ch=16, ch_mult=(1, 2, 4), num_res_blocks=1, norm_groups=8, mid_attention=False),
        HiFiGANConfig(
            upsample_initial_channel=64, resblock_kernel_sizes=(3, 7), resblock_dilation_sizes=((1, 3),) * 2
        ),
    )
    codec = MelVAECodec(config)
    mel_fn = codec.front_end
    results: dict = {"configs": {"mel_vae": config.to_dict()}}

    mel_part, wave_part = "mel" in args.parts, "waveform" in args.parts
    if mel_part:
        print("VAE")
        opt_vae = torch.optim.Adam(codec.vae.parameters(), lr=4.5e-4)
        results["vae_training"] = run_steps(
            "vae",
            args.vae_steps,
            lambda i: vae_step(codec.vae, mel_fn(crops(train, 32 * 160, 4, gen)), opt_vae, kl_weight=1e-6),
            "l1",
        )
        print("vocoder")
        discriminators = (MultiPeriodDiscriminator(channels=1 / 16), MultiScaleDiscriminator(channels=1 / 16))
        opt_g = torch.optim.AdamW(codec.vocoder.parameters(), lr=2e-4, betas=(0.8, 0.99))
        opt_d = torch.optim.AdamW(
            [p for d in discriminators for p in d.parameters()], lr=2e-4, betas=(0.8, 0.99)
        )

        def vocoder_batch(i: int) -> dict:
            wave = crops(train, 16 * 160, 2, gen)
            return vocoder_step(codec.vocoder, discriminators, mel_fn, mel_fn(wave), wave, opt_g, opt_d)

        results["vocoder_training"] = run_steps("vocoder", args.vocoder_steps, vocoder_batch, "mel_l1")

    if wave_part:
        print("waveform autoencoder")
        wcfg = WaveformAutoencoderConfig(channels=8, max_channels=64, strides=(2, 4, 5, 8), latent_dim=16)
        wcodec = WaveformCodec(wcfg)
        opt_w = torch.optim.Adam(wcodec.autoencoder.parameters(), lr=1e-3)
        results["configs"]["waveform"] = wcfg.to_dict()
        results["waveform_training"] = run_steps(
            "waveform",
            args.waveform_steps,
            lambda i: waveform_autoencoder_step(wcodec.autoencoder, crops(train, 16 * 320, 2, gen), opt_w),
            "loss",
        )

    print("evaluation on held-out clips")
    with torch.no_grad():
        mel = mel_fn(heldout)

        def mel_mse(wave_or_mel: torch.Tensor, is_mel: bool = False) -> float:
            other = wave_or_mel if is_mel else mel_fn(wave_or_mel)
            return float((other - mel).square().mean())

        silence = torch.zeros_like(heldout)
        table = {"baseline: silence": {"mel_mse": mel_mse(silence), "mr_stft": mr_stft(silence, heldout)}}
        if mel_part:
            codec.eval()
            estimate_scale_factor(codec, [crops(train, 256 * 640 // 4, 4, gen)[None] for _ in range(2)])
            silent_mel = torch.full_like(mel, math.log(config.mel.log_clamp))
            train_mean = mel_fn(crops(train, 64 * 160, 32, gen)).mean(dim=(0, 1))
            vae_mel = codec.vae.decode(codec.vae.encode(mel).mode())
            vocoded = codec.vocoder(mel)
            gl = griffin_lim(mel, mel_fn.filters, config.mel)
            chain = codec.decode(codec.encode(heldout[None]))[0]
            table |= {
                "VAE reconstruction (mel)": {"mel_mse": mel_mse(vae_mel, True)},
                "baseline: silent mel": {"mel_mse": mel_mse(silent_mel, True)},
                "baseline: training mean mel frame": {"mel_mse": mel_mse(train_mean.expand_as(mel), True)},
                "vocoder(mel(x))": {"mel_mse": mel_mse(vocoded), "mr_stft": mr_stft(vocoded, heldout)},
                "baseline: Griffin-Lim 32 it. from mel(x)": {
                    "mel_mse": mel_mse(gl),
                    "mr_stft": mr_stft(gl, heldout),
                },
                "MSG-LD chain decode(encode(x))": {
                    "mel_mse": mel_mse(chain),
                    "mr_stft": mr_stft(chain, heldout),
                },
            }
        if wave_part:
            wcodec.eval()
            wave_ae = wcodec.decode(wcodec.encode(heldout[None]))[0]
            table["waveform autoencoder"] = {
                "mel_mse": mel_mse(wave_ae),
                "mr_stft": mr_stft(wave_ae, heldout),
            }
    results["heldout"] = {"clips": int(heldout.shape[0]), "seconds_each": eval_len / 16000, "metrics": table}
    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "stemforge-codec": __version__,
    }
    print(f"\n{'system':45s} {'mel MSE':>10s} {'MR-STFT':>10s}")
    for name, row in table.items():
        mr = f"{row['mr_stft']:10.4f}" if "mr_stft" in row else f"{'':>10s}"
        print(f"{name:45s} {row['mel_mse']:10.4f} {mr}")
    for key in [k for k in ("vae_training", "vocoder_training", "waveform_training") if k in results]:
        r = results[key]
        print(
            f"{key}: {r['monitored']} {r['first_10pct_mean']:.4f} -> {r['last_10pct_mean']:.4f} in {r['steps']} steps, {r['seconds']} s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""codec-bundle: the trained VAE's weights land in the codec, and the scale factor is 1 / std of the
unscaled latents (checked against a float64 reference on real rendered audio)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from stemforge.train.checkpoint import CheckpointError, write_json_atomic
from stemforge.train.codec_bundle import bundle_mel_codec

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def fake_export(folder: Path, vae) -> None:
    from stemforge.codec import MelConfig

    folder.mkdir()
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, folder / "model.safetensors")
    write_json_atomic(
        folder / "config.json",
        {
            "task": "mel_vae",
            "model_class": "stemforge.codec.AutoencoderKL",
            "model_config": vae.config.to_dict(),
            "mel_config": MelConfig.from_name("msgld").to_dict(),
        },
    )


def test_bundle_loads_weights_and_sets_scale(tmp_path):
    from stemforge.codec import AutoencoderKL, AutoencoderKLConfig, load_codec
    from stemforge.data import read_audio

    torch.manual_seed(3)
    vae = AutoencoderKL(AutoencoderKLConfig.from_name("tiny"))
    fake_export(tmp_path / "vae", vae)
    waves = torch.stack([read_audio(FIXTURE / f"{s}.flac")[0][:20480] for s in ("soprano", "bass")])[None]
    out = bundle_mel_codec(tmp_path / "vae", tmp_path / "codec", scale_batches=iter([waves]))
    codec = load_codec(out)
    for name, value in vae.state_dict().items():
        assert torch.equal(codec.vae.state_dict()[name], value), name
    with torch.no_grad():
        unscaled = torch.stack([vae.encode(codec.mel(w[None])).mode() for w in waves[0]]).double()
    expected = 1.0 / unscaled.std()
    assert float(codec.scale_factor) == pytest.approx(float(expected), rel=1e-4)


def test_bundle_rejects_a_wrong_export(tmp_path):
    (tmp_path / "x").mkdir()
    write_json_atomic(tmp_path / "x" / "config.json", {"task": "midi"})
    with pytest.raises(CheckpointError, match="expected 'mel_vae'"):
        bundle_mel_codec(tmp_path / "x", tmp_path / "codec")

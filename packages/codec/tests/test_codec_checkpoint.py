"""Checkpoint directories that are incomplete or inconsistent give errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from stemforge.codec import MelVAECodec, WaveformAutoencoderConfig, WaveformCodec, load_codec


def test_incomplete_or_foreign_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(0)
    codec = WaveformCodec(WaveformAutoencoderConfig.from_name("tiny"))
    good = codec.save(tmp_path / "good")
    with pytest.raises(FileNotFoundError, match=r"config\.json does not exist"):
        load_codec(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_codec(broken)
    (broken / "config.json").write_text(json.dumps({"kind": "mel_vae"}))
    with pytest.raises(ValueError, match="not a stemforge-codec config"):
        load_codec(broken)
    config = json.loads((good / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config | {"kind": "wavenet"}))
    with pytest.raises(ValueError, match="unknown kind 'wavenet'"):
        load_codec(broken)
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors does not exist"):
        load_codec(broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_codec(broken)
    wider = WaveformCodec(
        WaveformAutoencoderConfig(channels=16, max_channels=32, strides=(2, 4, 4), latent_dim=8)
    )
    save_file({k: v.contiguous() for k, v in wider.state_dict().items()}, broken / "model.safetensors")
    with pytest.raises(ValueError, match=r"does not match its config\.json"):
        load_codec(broken)
    with pytest.raises(ValueError, match="holds a WaveformCodec"):
        MelVAECodec.load(good)


def test_save_replaces_atomically_and_keeps_no_temporaries(tmp_path: Path) -> None:
    torch.manual_seed(0)
    codec = WaveformCodec(WaveformAutoencoderConfig.from_name("tiny"))
    codec.save(tmp_path)
    codec.scale_factor.fill_(3.0)
    codec.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert float(load_codec(tmp_path).scale_factor) == 3.0

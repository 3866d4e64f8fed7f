"""Contract tests that every codec passes (diffusers' SchedulerCommonTest pattern).

A subclass provides ``make_codec``; every check below runs for it: shapes for many lengths,
determinism with a seed, save/load round trip, rebuilding from the JSON config alone, the scale
factor, bad input, chunked coding of long audio and encode-decode of the real rendered chorale.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from stemforge.codec import (
    Codec,
    MelVAECodec,
    MelVAECodecConfig,
    WaveformAutoencoderConfig,
    WaveformCodec,
    chunk_bounds,
    codec_from_config,
    load_codec,
)


def harmonic_stems(
    batch: int, stems: int, num_samples: int, sample_rate: int = 16000, seed: int = 0
) -> torch.Tensor:
    """Decaying harmonic notes with random pitches, one note sequence per stem (not noise, not zeros)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / sample_rate
    out = torch.zeros(batch, stems, num_samples)
    note = int(0.25 * sample_rate)
    for b in range(batch):
        for s in range(stems):
            for start in range(0, num_samples, note):
                f0 = float(110.0 * 2 ** (torch.randint(0, 36, (1,), generator=gen).item() / 12))
                seg = t[: min(note, num_samples - start)]
                tone = sum(math.pow(0.5, h) * torch.sin(2 * math.pi * f0 * (h + 1) * seg) for h in range(4))
                out[b, s, start : start + len(seg)] = 0.2 * tone * torch.exp(-4.0 * seg)
    return out


class CodecContract:
    """Checks shared by all codecs; subclasses set ``make_codec``."""

    def make_codec(self) -> Codec:
        raise NotImplementedError

    @pytest.fixture
    def codec(self) -> Codec:
        torch.manual_seed(0)
        return self.make_codec().eval()

    @torch.no_grad()
    def test_shapes_for_many_lengths(self, codec: Codec) -> None:
        hop = codec.hop_length
        for num_samples in (1, hop - 1, hop, hop + 1, 3 * hop + 17, 7 * hop):
            wave = harmonic_stems(2, 3, num_samples)
            latent = codec.encode(wave)
            assert latent.shape == (2, 3, *codec.latent_shape(num_samples)), num_samples
            assert latent.shape[3] == math.ceil(num_samples / hop)
            decoded = codec.decode(latent)
            assert decoded.shape == (2, 3, latent.shape[3] * hop)
            assert torch.isfinite(decoded).all()
        assert codec.latent_rate == pytest.approx(codec.sample_rate / hop)

    @torch.no_grad()
    def test_stems_are_coded_separately(self, codec: Codec) -> None:
        wave = harmonic_stems(2, 3, 4 * codec.hop_length)
        latent = codec.encode(wave)
        alone = codec.encode(wave[1:2, 2:3])
        torch.testing.assert_close(latent[1:2, 2:3], alone, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(latent[0, 0], latent[0, 1])

    @torch.no_grad()
    def test_determinism_with_seed(self, codec: Codec) -> None:
        torch.manual_seed(0)
        twin = self.make_codec().eval()
        for (name, a), (_, b) in zip(codec.state_dict().items(), twin.state_dict().items()):
            assert torch.equal(a, b), name
        wave = harmonic_stems(1, 2, 5 * codec.hop_length)
        torch.testing.assert_close(codec.encode(wave), twin.encode(wave), rtol=0, atol=0)
        torch.testing.assert_close(codec.encode(wave), codec.encode(wave), rtol=0, atol=0)
        torch.manual_seed(1)
        other = self.make_codec().eval()
        assert not torch.allclose(codec.encode(wave), other.encode(wave))

    @torch.no_grad()
    def test_save_load_round_trip(self, codec: Codec, tmp_path: Path) -> None:
        codec.scale_factor.fill_(0.37)
        directory = codec.save(tmp_path / "ckpt")
        assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
        config = json.loads((directory / "config.json").read_text())
        assert config["kind"] == codec.kind and config["sample_rate"] == codec.sample_rate
        assert config["scale_factor"] == pytest.approx(0.37)
        loaded = load_codec(directory)
        assert type(loaded) is type(codec) and float(loaded.scale_factor) == pytest.approx(0.37)
        wave = harmonic_stems(1, 2, 6 * codec.hop_length)
        latent = codec.encode(wave)
        torch.testing.assert_close(loaded.encode(wave), latent, rtol=0, atol=0)
        torch.testing.assert_close(loaded.decode(latent), codec.decode(latent), rtol=0, atol=0)
        assert type(codec).load(directory).config_dict() == codec.config_dict()

    def test_rebuild_from_json_alone(self, codec: Codec, tmp_path: Path) -> None:
        codec.save(tmp_path)
        rebuilt = codec_from_config(json.loads((tmp_path / "config.json").read_text()))
        ours = {k: v.shape for k, v in codec.state_dict().items()}
        theirs = {k: v.shape for k, v in rebuilt.state_dict().items()}
        assert ours == theirs
        assert rebuilt.latent_shape(12345) == codec.latent_shape(12345)

    @torch.no_grad()
    def test_scale_factor_scales_latents(self, codec: Codec) -> None:
        wave = harmonic_stems(1, 1, 4 * codec.hop_length)
        unscaled = codec.encode(wave)
        codec.scale_factor.fill_(2.5)
        torch.testing.assert_close(codec.encode(wave), 2.5 * unscaled)
        codec.scale_factor.fill_(1.0)
        decoded = codec.decode(unscaled)
        codec.scale_factor.fill_(2.5)
        torch.testing.assert_close(codec.decode(2.5 * unscaled), decoded, rtol=1e-5, atol=1e-6)

    @torch.no_grad()
    def test_bad_input(self, codec: Codec) -> None:
        hop = codec.hop_length
        wave = harmonic_stems(1, 2, 4 * hop)
        with pytest.raises(ValueError, match=r"expects \d+ Hz; resample it first \(stemforge.data.resample"):
            codec.encode(wave, sample_rate=codec.sample_rate * 2)
        with pytest.raises(ValueError, match="non-finite"):
            codec.encode(torch.where(torch.arange(4 * hop) == 7, float("nan"), wave))
        with pytest.raises(ValueError, match="zero-length"):
            codec.encode(wave[..., :0])
        with pytest.raises(ValueError, match=r"\(B, S, N\)"):
            codec.encode(wave[0])
        with pytest.raises(ValueError, match="float"):
            codec.encode((wave * 1000).to(torch.int16))
        latent = codec.encode(wave)
        with pytest.raises(ValueError, match="expected latents"):
            codec.decode(latent[:, :, :-1])
        with pytest.raises(ValueError, match="expected latents"):
            codec.decode(latent[0])
        with pytest.raises(ValueError, match="NaN"):
            codec.decode(latent * float("nan"))

    @torch.no_grad()
    @pytest.mark.parametrize("stage", ["encode", "decode"])
    def test_chunked_seams_are_no_worse_than_elsewhere(self, codec: Codec, stage: str) -> None:
        """Chunked vs. whole-file coding: the error at the seams is no larger than away from them."""
        hop, frames, chunk, overlap = codec.hop_length, 48, 16, 4
        wave = harmonic_stems(1, 1, frames * hop, seed=3)
        latent = codec.encode(wave, chunk_frames=10**6)
        whole = latent if stage == "encode" else codec.decode(latent, chunk_frames=10**6)

        def seam_errors(overlap_frames: int, context_frames: int) -> tuple[float, float]:
            codec.default_context_frames = context_frames
            try:
                if stage == "encode":
                    chunked = codec.encode(wave, chunk_frames=chunk, overlap_frames=overlap_frames)
                else:
                    chunked = codec.decode(latent, chunk_frames=chunk, overlap_frames=overlap_frames)
            finally:
                del codec.default_context_frames
            error = (chunked - whole).abs()
            # Mean error per latent frame: latent (1, 1, C, T[, F]) or waveform (1, 1, T * hop).
            per_frame = (
                error.movedim(3, 0).reshape(frames, -1) if stage == "encode" else error.reshape(frames, hop)
            )
            per_frame = per_frame.mean(1)
            bounds = chunk_bounds(frames, chunk, overlap_frames)
            seams = {
                f for (_, end), (start, _) in itertools.pairwise(bounds) for f in range(start - 2, end + 2)
            }
            away = [f for f in range(frames) if f not in seams]
            return per_frame[sorted(seams)].mean().item(), per_frame[away].mean().item()

        # A floor of 1e-3 of the output's spread keeps float rounding of a near-exact match from counting.
        floor = 1e-3 * whole.std().item()
        at_seams, away = seam_errors(overlap, type(codec).default_context_frames)
        assert at_seams <= 1.5 * away + floor, (at_seams, away, floor)
        # The check can fail: cutting without overlap or context leaves seams.
        naive_seams, naive_away = seam_errors(0, 0)
        assert naive_seams > 2.0 * naive_away + floor, (naive_seams, naive_away, floor)

    @torch.no_grad()
    def test_encode_decode_rendered_chorale(self, codec: Codec, chorale_stems: torch.Tensor) -> None:
        assert codec.sample_rate == 16000  # the chorale's rate
        clip = chorale_stems[..., : 3 * codec.sample_rate]
        latent = codec.encode(clip, sample_rate=16000)
        assert latent.shape == (1, 4, *codec.latent_shape(clip.shape[-1]))
        assert torch.isfinite(latent).all()
        per_stem_std = latent.flatten(2).std(-1)
        assert (per_stem_std > 1e-4).all()
        # Different parts give different latents.
        assert (latent[0, 0] - latent[0, 3]).abs().mean() > 1e-3
        decoded = codec.decode(latent)
        assert decoded.shape[-1] == latent.shape[3] * codec.hop_length >= clip.shape[-1]
        assert torch.isfinite(decoded).all()
        if codec.kind == "mel_vae":
            assert decoded.abs().max() <= 1.0  # HiFi-GAN ends in tanh


class TestMelVAECodec(CodecContract):
    def make_codec(self) -> Codec:
        return MelVAECodec(MelVAECodecConfig.from_name("tiny"))


class TestWaveformCodec(CodecContract):
    def make_codec(self) -> Codec:
        return WaveformCodec(WaveformAutoencoderConfig.from_name("tiny"))


class TestWaveformCodecFreqLayout(CodecContract):
    """latent_freq = 4: the same autoencoder presented as (latent_dim / 4, T, 4) latents."""

    def make_codec(self) -> Codec:
        return WaveformCodec(dataclasses.replace(WaveformAutoencoderConfig.from_name("tiny"), latent_freq=4))


def test_waveform_freq_layout_holds_the_autoencoders_numbers() -> None:
    torch.manual_seed(0)
    flat = WaveformCodec(WaveformAutoencoderConfig.from_name("tiny")).eval()
    grid = WaveformCodec(dataclasses.replace(flat.config, latent_freq=4)).eval()
    grid.load_state_dict(flat.state_dict())
    wave = 0.3 * torch.sin(torch.arange(2048) * 2 * torch.pi * 440 / 16000).expand(1, 2, -1)
    with torch.no_grad():
        a, b = flat.encode(wave, sample_rate=16000), grid.encode(wave, sample_rate=16000)
        assert b.shape == (1, 2, 2, a.shape[3], 4)
        assert torch.equal(b[:, :, 1, :, 3], a[:, :, 7])  # channel c * F + f -> (c, f)
        assert torch.allclose(grid.decode(b), flat.decode(a), atol=1e-6)


def test_waveform_freq_layout_must_divide_latent_dim() -> None:
    config = dataclasses.replace(WaveformAutoencoderConfig.from_name("tiny"), latent_freq=3)
    with pytest.raises(ValueError, match="latent_freq 3 must be 0"):
        WaveformCodec(config)

"""Style encoder: statistics against a float64 reference, invariances, save/load."""

import pytest
import torch

from stemforge.conditioning import StyleEncoder, StyleEncoderConfig, style_statistics


def _reference_stats(latent: torch.Tensor, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop-based float64 mean and unbiased std over the time axis."""
    x = latent.double().movedim(time_dim, -1)
    n = x.shape[-1]
    mean = sum(x[..., i] for i in range(n)) / n
    var = sum((x[..., i] - mean) ** 2 for i in range(n)) / (n - 1)
    return mean.unsqueeze(-1).movedim(-1, time_dim), var.sqrt().unsqueeze(-1).movedim(-1, time_dim)


@pytest.mark.parametrize(("shape", "time_dim"), [((2, 8, 32, 16), -2), ((3, 64, 40), -1)])
def test_statistics_match_float64_reference(shape, time_dim):
    torch.manual_seed(0)
    latent = torch.randn(shape) * 1.7 + 0.4
    stats = style_statistics(latent, time_dim=time_dim)
    mean, std = _reference_stats(latent, time_dim)
    torch.testing.assert_close(stats.mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats.std.double(), std, rtol=1e-5, atol=1e-6)


def test_statistics_agree_with_style_grounding_in_samplers():
    # The samplers' StyleGrounding keeps the reference statistics the same way.
    samplers = pytest.importorskip("stemforge.samplers")
    torch.manual_seed(1)
    ref = torch.randn(1, 1, 8, 20, 16) * 2 + 1
    grounding = samplers.StyleGrounding(ref, 1.0, time_dim=-2)
    stats = style_statistics(ref, time_dim=-2)
    torch.testing.assert_close(stats.mean, grounding.ref_mean)
    torch.testing.assert_close(stats.std, grounding.ref_std)


def test_style_vector_invariant_to_frame_order_and_sensitive_to_timbre():
    torch.manual_seed(2)
    enc = StyleEncoder(StyleEncoderConfig.from_name("msgld")).eval()
    latent = torch.randn(2, 8, 64, 16)
    style = enc(latent)
    assert style.shape == (2, 256)
    shuffled = latent[:, :, torch.randperm(64)]
    torch.testing.assert_close(enc(shuffled), style, rtol=1e-5, atol=1e-5)
    brighter = latent.clone()
    brighter[:, :, :, 8:] *= 3.0  # more energy in the upper latent bins
    assert (enc(brighter) - style).norm() > 0.1 * style.norm()
    # Waveform latents (B, C, T).
    wave_enc = StyleEncoder(StyleEncoderConfig.from_name("waveform"))
    assert wave_enc(torch.randn(3, 64, 50)).shape == (3, 256)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(3)
    enc = StyleEncoder(StyleEncoderConfig.from_name("tiny"))
    enc.save(tmp_path / "style")
    again = StyleEncoder.load(tmp_path / "style")
    assert again.config == enc.config
    latent = torch.randn(2, 2, 10, 4)
    torch.testing.assert_close(again(latent), enc(latent))
    assert not list((tmp_path / "style").glob("*.tmp"))
    assert StyleEncoderConfig(**enc.config.to_dict()) == enc.config


def test_bad_input_errors(tmp_path):
    enc = StyleEncoder(StyleEncoderConfig.from_name("tiny"))
    with pytest.raises(ValueError, match="C=2, F=4"):
        enc(torch.randn(1, 3, 10, 4))
    with pytest.raises(ValueError, match="at least 2"):
        enc(torch.randn(1, 2, 1, 4))
    with pytest.raises(ValueError, match="NaN"):
        enc(torch.full((1, 2, 5, 4), float("nan")))
    with pytest.raises(ValueError, match="unknown style encoder preset"):
        StyleEncoderConfig.from_name("big")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        StyleEncoder.load(tmp_path)

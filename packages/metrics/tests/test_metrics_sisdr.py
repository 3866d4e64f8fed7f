"""SI-SDR / SI-SDRi under MSDM's protocol: float64 loop reference, analytic cases, window logic."""

import math

import numpy as np
import pytest
import torch

from stemforge.metrics import SISDRi, is_silent, si_sdr, si_sdri_windows

RATE = 1000  # small rate: 4 s windows are 4000 samples


def _ref_si_sdr(est: np.ndarray, ref: np.ndarray, eps: float = 1e-8) -> float:
    """Element-by-element float64 transcription of MSDM's sisnr."""
    dot = sum(float(a) * float(b) for a, b in zip(est, ref))
    energy = sum(float(b) * float(b) for b in ref)
    alpha = (dot + eps) / (energy + eps)
    s_target = sum((alpha * float(b)) ** 2 for b in ref) + eps
    s_error = sum((alpha * float(b) - float(a)) ** 2 for a, b in zip(est, ref)) + eps
    return 10 * math.log10(s_target / s_error)


def _ref_protocol(est: np.ndarray, refs: np.ndarray, rate: int) -> dict[int, list[float]]:
    """MSDM's evaluate_separations loop for one track, in plain Python."""
    chunk, overlap = 4 * rate, 2 * rate
    step = chunk - overlap
    mix = refs.sum(axis=0)
    out: dict[int, list[float]] = {k: [] for k in range(refs.shape[0])}
    for i in range(math.ceil((refs.shape[1] - overlap) / step)):
        s, e = i * step, i * step + chunk
        active = sum(
            1 for k in range(refs.shape[0]) if not np.linalg.norm(refs[k, s:e]) / refs[k, s:e].size < 1.5e-5
        )
        if active <= 1:
            continue
        for k in range(refs.shape[0]):
            out[k].append(_ref_si_sdr(est[k, s:e], refs[k, s:e]) - _ref_si_sdr(mix[s:e], refs[k, s:e]))
    return out


def test_si_sdr_matches_float64_reference():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 2000, generator=gen)
    est = ref * 0.7 + 0.3 * torch.randn(3, 2000, generator=gen)
    ours = si_sdr(est, ref)
    for k in range(3):
        assert float(ours[k]) == pytest.approx(_ref_si_sdr(est[k].numpy(), ref[k].numpy()), abs=1e-9)


def test_scaled_copies_are_scale_invariant():
    ref = torch.randn(4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    values = [float(si_sdr(a * ref, ref, eps=0.0)) for a in (0.5, 2.0, 10.0)]
    assert all(v > 250 for v in values)  # float64 round-off only
    eps_values = [float(si_sdr(a * ref, ref)) for a in (0.5, 2.0)]
    assert all(v > 80 for v in eps_values)
    assert float(si_sdr(ref, ref, eps=0.0)) == math.inf  # exact copy: zero error energy


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_white_noise_at_known_snr(snr_db):
    gen = torch.Generator().manual_seed(2)
    ref = torch.randn(16000, generator=gen, dtype=torch.float64)
    noise = torch.randn(16000, generator=gen, dtype=torch.float64)
    noise = noise - (noise @ ref) / (ref @ ref) * ref  # orthogonal to the reference
    noise = noise * (ref.norm() / noise.norm()) * 10 ** (-snr_db / 20)
    assert float(si_sdr(ref + noise, ref)) == pytest.approx(snr_db, abs=1e-6)
    # Scaling the estimate does not change it.
    assert float(si_sdr(0.3 * (ref + noise), ref)) == pytest.approx(snr_db, abs=1e-6)


def _track(gen: torch.Generator, seconds: float = 11.3) -> torch.Tensor:
    n = int(seconds * RATE)
    stems = torch.randn(3, n, generator=gen) * torch.tensor([[0.3], [0.2], [0.1]])
    stems[1, : 4 * RATE] = 0.0  # stem 1 silent in the first 4 s
    stems[2, : 6 * RATE] = 0.0  # stem 2 silent in the first 6 s
    stems[0, 8 * RATE :] = 1e-9  # stem 0 numerically silent (below threshold) after 8 s
    return stems


def test_protocol_matches_plain_python_loop_and_skips_single_source_windows():
    gen = torch.Generator().manual_seed(3)
    refs = _track(gen)
    est = refs + 0.05 * torch.randn(refs.shape, generator=gen)
    windows = si_sdri_windows(est, refs, RATE)
    # 11.3 s -> ceil((11.3 - 2) / 2) = 5 windows starting at 0, 2, 4, 6, 8 s; [0, 4) has only stem 0
    # active, [2, 6) has stems 0 and 1, [8, 11.3) has stems 1 and 2 (stem 0 is below 1.5e-5).
    assert windows.num_windows_total == 5
    assert windows.starts == (2 * RATE, 4 * RATE, 6 * RATE, 8 * RATE)
    assert windows.ends[-1] == refs.shape[1]
    expected = _ref_protocol(est.numpy(), refs.numpy(), RATE)
    for k in range(3):
        np.testing.assert_allclose(windows.values[:, k].numpy(), expected[k], atol=1e-8)
    unfiltered = si_sdri_windows(est, refs, RATE, filter_single_source=False)
    assert unfiltered.values.shape[0] == 5


def test_silence_threshold_is_msdm():
    n = 4000
    just_below = torch.full((n,), 1.5e-5 * n / math.sqrt(n) * 0.99)
    just_above = torch.full((n,), 1.5e-5 * n / math.sqrt(n) * 1.01)
    assert bool(is_silent(just_below)) and not bool(is_silent(just_above))


def test_metric_means_over_all_windows_of_all_tracks():
    gen = torch.Generator().manual_seed(4)
    tracks = [_track(gen, s) for s in (11.3, 9.0)]
    estimates = [t + 0.1 * torch.randn(t.shape, generator=gen) for t in tracks]
    metric = SISDRi(("a", "b", "c"), RATE)
    for est, ref in zip(estimates, tracks):
        metric.update(est, ref)
    result = metric.compute()
    rows = torch.cat([si_sdri_windows(e, r, RATE).values for e, r in zip(estimates, tracks)])
    assert result["num_windows"] == rows.shape[0]
    for k, name in enumerate("abc"):
        assert result[name] == pytest.approx(float(rows[:, k].mean()), abs=1e-9)
    # Perfect separation improves on the mixture for every stem.
    assert result["a"] > 0 and result["b"] > 0 and result["c"] > 0


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"\(S, N\)"):
        si_sdri_windows(torch.randn(2, 100), torch.randn(3, 100), RATE)
    with pytest.raises(ValueError, match="NaN"):
        si_sdri_windows(torch.full((2, 100), float("nan")), torch.randn(2, 100), RATE)
    metric = SISDRi(("a", "b"), RATE)
    with pytest.raises(ValueError, match="stem order"):
        metric.update(torch.randn(3, 5000), torch.randn(3, 5000))
    with pytest.raises(ValueError, match="nothing to average"):
        metric.compute()

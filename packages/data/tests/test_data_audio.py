"""Audio I/O on real files: formats, mono policy, resampling on read, bad files, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.data import AudioError, audio_info, read_audio, resample, truncated_wav, write_audio

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def test_read_fixture_mix_equals_sum_of_stems():
    mix, sr = read_audio(CHORALE / "mix.flac")
    stems = [read_audio(CHORALE / f"{s}.flac")[0] for s in ("soprano", "alto", "tenor", "bass")]
    assert sr == 16000 and mix.dtype == torch.float32 and mix.shape == (190546,)
    torch.testing.assert_close(mix, sum(stems), atol=0, rtol=0)
    assert audio_info(CHORALE / "mix.flac") == (190546, 16000, 1)


@pytest.mark.parametrize(("suffix", "tol"), [(".wav", 0.0), (".flac", 1 / 32768), (".ogg", None)])
def test_write_read_round_trip(tmp_path, suffix, tol):
    wave, sr = read_audio(CHORALE / "soprano.flac")
    wave = wave[: sr * 2]
    original = wave.clone()
    path = write_audio(tmp_path / f"out{suffix}", wave, sr)
    back, sr2 = read_audio(path)
    assert sr2 == sr and back.shape == wave.shape
    torch.testing.assert_close(wave, original, atol=0, rtol=0)  # input untouched
    if tol is not None:
        assert float((back - wave).abs().max()) <= tol
    else:  # Vorbis is lossy: check the waveform survives (correlation), not the samples.
        corr = float(torch.dot(back, wave) / (back.norm() * wave.norm()))
        assert corr > 0.95


def test_mono_policy_averages_channels(tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, (2, 1000)).astype(np.float32)
    path = write_audio(tmp_path / "st.wav", stereo, 8000)
    mono, _ = read_audio(path)
    both, _ = read_audio(path, mono=False)
    np.testing.assert_allclose(both.numpy(), stereo)
    np.testing.assert_allclose(mono.numpy(), stereo.mean(0), atol=1e-7)


def test_read_with_resampling(tmp_path):
    wave, _ = read_audio(CHORALE / "bass.flac")
    y, sr = read_audio(CHORALE / "bass.flac", sample_rate=22050)
    assert sr == 22050
    torch.testing.assert_close(y, resample(wave, 16000, 22050))


def test_bad_files(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        read_audio(tmp_path / "missing.wav")
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(AudioError, match=r"garbage\.flac: cannot read audio"):
        read_audio(garbage)
    truncated = tmp_path / "cut.flac"
    truncated.write_bytes((CHORALE / "mix.flac").read_bytes()[:40])
    with pytest.raises(AudioError, match=r"cut\.flac"):
        read_audio(truncated)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="holds no samples"):
        read_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        read_audio(nan)


def test_write_refuses_bad_audio_and_leaves_nothing(tmp_path):
    wave = torch.zeros(100)
    wave[3] = float("nan")
    with pytest.raises(AudioError, match="nothing was written"):
        write_audio(tmp_path / "x.wav", wave, 16000)
    with pytest.raises(AudioError, match="unknown audio suffix"):
        write_audio(tmp_path / "x.mp3", torch.zeros(10), 16000)
    with pytest.raises(AudioError, match="sample_rate"):
        write_audio(tmp_path / "x.wav", torch.zeros(10), 0)
    # A failure inside soundfile (FLAC cannot hold 1 MHz) leaves neither the file nor a temp file.
    with pytest.raises(Exception):  # noqa: B017 - soundfile's own error type
        write_audio(tmp_path / "x.flac", torch.zeros(10), 1_000_000)
    assert list(tmp_path.iterdir()) == []


def test_truncated_wav_is_found_from_the_header(tmp_path):
    """A WAV cut short (an interrupted copy) reads without error in soundfile; the header tells."""
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.zeros((16000, 2), dtype=np.float32), 16000, subtype="PCM_16")
    assert truncated_wav(whole) is None
    cut = tmp_path / "cut.wav"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) - 4 * 8000])  # half a second of 2 x 16-bit frames gone
    announced, present = truncated_wav(cut)
    assert announced == pytest.approx(1.0) and present == pytest.approx(0.5)
    assert len(sf.read(cut)[0]) == 8000  # what soundfile makes of it, silently
    flac = tmp_path / "whole.flac"
    sf.write(flac, np.zeros(1600, dtype=np.float32), 16000)
    assert truncated_wav(flac) is None

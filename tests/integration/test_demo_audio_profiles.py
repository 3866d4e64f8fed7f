"""The spectral profile that benchmarks/insert/eval_demo_audio.py uses to say whether a produced stem
sounds like its instrument, on the rendered held-out chorale (piano, steel guitar, strings,
electric bass): it is a spectrum (one value per mel band, averaged over time), and on real stems
each stem's profile is nearest to its own instrument's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k"


def _script():
    spec = importlib.util.spec_from_file_location(
        "eval_demo_audio", ROOT / "benchmarks/insert/eval_demo_audio.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_profiles_are_spectra_and_each_stem_is_nearest_its_own():
    script = _script()
    stems = torch.stack(
        [torch.from_numpy(sf.read(FIXTURE / f"{s}.flac", dtype="float32")[0]) for s in script.STEMS]
    )
    # Two 4 s excerpts as two "tracks" of references; a third excerpt is what gets scored.
    rate = 16000
    references = torch.stack([stems[:, : 4 * rate], stems[:, 4 * rate : 8 * rate]])
    profiles = script.Profiles(references)
    assert profiles.reference.shape == (4, 64)  # one value per mel band, not per frame
    held_out = stems[:, 7 * rate : 11 * rate]
    for i in range(len(script.STEMS)):
        for distances in (profiles.distances(held_out[i]), profiles.shape_distances(held_out[i])):
            assert min(range(4), key=distances.__getitem__) == i, (script.STEMS[i], distances)
    # Physical sense: the electric bass keeps more of its energy in the low bands than the piano
    # soprano does (low quarter minus high quarter of the log-mel profile).
    tilt = profiles.reference[:, :16].mean(-1) - profiles.reference[:, 48:].mean(-1)
    assert float(tilt[3]) > float(tilt[0])
    # A level change (-12 dB, magnitude x 1/4) moves the raw distance by about (ln 4)^2 = 1.9, the shape distance
    # by under 1 % (only the bands near the log floor move differently).
    quiet, loud = 0.25 * held_out[3], held_out[3]
    assert profiles.distances(quiet)[3] > profiles.distances(loud)[3] + 1.5
    shape = profiles.shape_distances(loud)[3]
    assert abs(profiles.shape_distances(quiet)[3] - shape) < 0.01 * shape

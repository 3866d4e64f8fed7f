"""MIDI metrics on real MIDI (the shared fixtures) and constructed cases with known answers."""

import itertools
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from stemforge.metrics import (
    coconet_nll,
    note_scores,
    notes_from_roll,
    parallel_fifths_octaves,
    pitch_class_consistency,
    rhythm_consistency,
    voice_range_violations,
)

MIDI = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "midi"


def _brute_force_matches(est, ref, tol):
    """Largest set of one-to-one pairs by trying every assignment (tiny inputs only)."""
    best = 0
    for perm in itertools.permutations(range(len(ref)), min(len(est), len(ref))):
        pairs = zip(range(len(est)), perm)
        best = max(
            best, sum(1 for i, j in pairs if est[i][2] == ref[j][2] and abs(est[i][0] - ref[j][0]) <= tol)
        )
    return best


def test_note_matching_is_a_maximum_matching():
    rng = np.random.default_rng(0)
    for _ in range(30):
        ref = [(float(rng.integers(0, 6)), 0.0, int(rng.integers(60, 62))) for _ in range(5)]
        est = [(float(rng.integers(0, 6)), 0.0, int(rng.integers(60, 62))) for _ in range(4)]
        ref_a = np.array([(o, o + 1, p) for o, _, p in ref])
        est_a = np.array([(o, o + 1, p) for o, _, p in est])
        scores = note_scores(est_a, ref_a, onset_tolerance=1.0)
        assert scores.matches == _brute_force_matches(est, ref, 1.0)


def test_note_scores_on_a_real_midi_stem():
    midi = pretty_midi.PrettyMIDI(str(MIDI / "chorale_train000.mid"))
    inst = max(midi.instruments, key=lambda i: len(i.notes))
    ref = np.array([(n.start, n.end, n.pitch) for n in inst.notes])
    assert len(ref) > 10
    perfect = note_scores(ref, ref, with_offset=True)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    # Shift every other note by 30 ms (inside the 50 ms onset window) and cut offsets short.
    est = ref.copy()
    est[::2, :2] += 0.03
    est[:, 1] = est[:, 0] + 0.5 * (ref[:, 1] - ref[:, 0])
    onset_only = note_scores(est, ref)
    with_offsets = note_scores(est, ref, with_offset=True)
    assert onset_only.f1 == 1.0
    assert with_offsets.matches < len(ref)
    # Drop a third of the notes and transpose a few: recall and precision follow exactly.
    keep = est[: 2 * len(est) // 3].copy()
    keep[:3, 2] += 1
    partial = note_scores(keep, ref)
    assert partial.recall == pytest.approx((len(keep) - 3) / len(ref))
    assert partial.precision == pytest.approx((len(keep) - 3) / len(keep))


def test_notes_from_roll():
    roll = torch.zeros(10, 128, dtype=torch.bool)
    roll[0:3, 60] = True
    roll[4:6, 60] = True
    roll[2:9, 64] = True
    notes = notes_from_roll(roll)
    np.testing.assert_array_equal(notes, [[0, 3, 60], [2, 9, 64], [4, 6, 60]])


def test_pitch_class_and_rhythm_consistency():
    steps = 32
    c_major = torch.zeros(steps, 128, dtype=torch.bool)
    for p in (48, 52, 55):  # C E G
        c_major[:, p] = True
    in_key = torch.zeros(steps, 128, dtype=torch.bool)
    in_key[:, 72] = True  # C5
    out_of_key = torch.zeros(steps, 128, dtype=torch.bool)
    out_of_key[:, 73] = True  # C#5
    assert pitch_class_consistency(in_key, c_major) == pytest.approx(1 / np.sqrt(3))
    assert pitch_class_consistency(out_of_key, c_major) == 0.0
    # Rhythm: context hits on every quarter (4 steps); a stem on the same grid vs. off-beat.
    context = torch.zeros(steps, 128, dtype=torch.bool)
    context[::4, 36] = True
    on_beat = torch.zeros(steps, 128, dtype=torch.bool)
    on_beat[::8, 60] = True
    off_beat = torch.zeros(steps, 128, dtype=torch.bool)
    off_beat[2::4, 60] = True
    good, bad = rhythm_consistency(on_beat, context), rhythm_consistency(off_beat, context)
    assert good["onset_agreement"] == 1.0 and bad["onset_agreement"] == 0.0
    assert good["metrical_similarity"] > 0.7 and bad["metrical_similarity"] == 0.0


def test_satb_rules_on_constructed_chorale():
    # Four chords; soprano/bass move C->D in parallel octaves; alto/tenor parallel fifths.
    s = [72, 74, 74, 76]
    a = [67, 69, 69, 64]
    t = [60, 62, 62, 60]
    b = [48, 50, 50, 36]  # last bass note E2-range violation (36 < 40)
    voices = torch.tensor([s, a, t, b]).repeat_interleave(2, dim=1)  # two steps per chord
    counts = parallel_fifths_octaves(voices)
    # chord 1 -> 2: all voices up a tone. Pairs: S-A (P4), S-T (P8), S-B (P8), A-T (P5), A-B (P5), T-B (P8)
    # -> 2 fifths, 3 octaves. chord 2 -> 3 is a repetition (merged). chord 3 -> 4: S up, A/T/B down:
    # T-B: 62-50 (P8) -> 60-36 (two octaves, 0 mod 12) both down -> 1 more octave.
    assert counts == {"parallel_fifths": 2, "parallel_octaves": 4}
    ranges = voice_range_violations(voices)
    assert ranges["bass"] == 2 and ranges["total"] == 2
    rests = voices.clone()
    rests[1] = -1
    assert parallel_fifths_octaves(rests)["parallel_fifths"] == 0
    with pytest.raises(ValueError, match="SATB"):
        voice_range_violations(torch.zeros(3, 5))


def test_coconet_nll():
    gen = torch.Generator().manual_seed(0)
    log_probs = -torch.rand(2, 4, 10, generator=gen, dtype=torch.float64)
    out = coconet_nll(log_probs)
    assert out.framewise == pytest.approx(float(-log_probs.sum() / 20))
    assert out.notewise == pytest.approx(float(-log_probs.sum() / 80))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 5:] = False
    masked = coconet_nll(log_probs, mask)
    expected = -(log_probs[0].sum() + log_probs[1, :, :5].sum()) / 15
    assert masked.framewise == pytest.approx(float(expected)) and masked.num_frames == 15
    with pytest.raises(ValueError, match="<= 0"):
        coconet_nll(torch.rand(1, 4, 3) + 0.1)

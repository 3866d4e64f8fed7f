"""The two baselines on real JSB chorales."""

from __future__ import annotations

import torch

from stemforge.insert.baselines import _parallel, most_frequent_pitch, voice_leading, voice_statistics
from stemforge.metrics.satb import parallel_fifths_octaves
from stemforge.midi import REST, load_jsb


def test_voice_statistics_on_the_training_split():
    modes, ranges = voice_statistics(load_jsb("train"))
    assert len(modes) == len(ranges) == 4
    # Soprano sits above bass in both its most frequent pitch and its range.
    assert modes[0] > modes[1] > modes[2] > modes[3]
    assert all(low < high for low, high in ranges)
    assert ranges[0][1] > ranges[3][1]


def test_most_frequent_pitch_fills_only_the_voice():
    chorale = load_jsb("test")[0]
    out = most_frequent_pitch(chorale, 1, [70, 65, 55, 45])
    assert (out[1] == 65).all()
    torch.testing.assert_close(out[[0, 2, 3]], chorale[[0, 2, 3]])
    assert (chorale[1] != 65).any()  # the input is not modified


def test_parallel_rule_matches_metrics_on_a_two_chord_example():
    # C4/C5 -> D4/D5 is a parallel octave; G4/C5 -> A4/D5 a parallel fourth (not counted).
    assert _parallel(60, 72, 62, 74)
    assert not _parallel(67, 72, 69, 74)
    assert _parallel(60, 67, 62, 69)  # parallel fifth
    assert not _parallel(60, 67, 62, 67)  # oblique motion
    voices = torch.tensor([[72, 74], [67, 69], [60, 62], [48, 48]])
    counts = parallel_fifths_octaves(voices)
    assert counts == {"parallel_fifths": 1, "parallel_octaves": 1}


def test_voice_leading_stays_in_range_between_neighbours_and_beats_the_constant():
    chorales = load_jsb("test")[:8]
    modes, ranges = voice_statistics(load_jsb("train"))
    hits_rule = hits_const = total = 0
    for chorale in chorales:
        for voice in range(4):
            filled = voice_leading(chorale, voice, ranges, modes[voice])
            torch.testing.assert_close(
                filled[[i for i in range(4) if i != voice]], chorale[[i for i in range(4) if i != voice]]
            )
            sounding = filled[voice] != REST
            low, high = ranges[voice]
            assert ((filled[voice][sounding] >= low) & (filled[voice][sounding] <= high)).all()
            const = most_frequent_pitch(chorale, voice, modes)
            hits_rule += int((filled[voice] == chorale[voice]).sum())
            hits_const += int((const[voice] == chorale[voice]).sum())
            total += chorale.shape[1]
    # Chord tones with smooth motion recover Bach's pitch more often than a held pitch.
    assert hits_rule / total > 1.1 * hits_const / total
    assert hits_rule / total > 0.15

"""VoiceInsertionPipeline, the MIDI kind, on the shipped JSB model: the contract every pipeline kind
passes (save/load round trip, determinism under a seed, any length, errors before work) and what
the model must do (fill only the hidden voices, score held-out chorales far below uniform, respect
the no-parallels constraint)."""

from __future__ import annotations

import json
from pathlib import Path

import pretty_midi
import pytest
import torch

from stemforge.metrics.satb import parallel_fifths_octaves
from stemforge.midi import REST, load_jsb, load_midi, read_voice_song
from stemforge.pipelines import FORMAT, MultiTrackPipeline, PipelineError, VoiceInsertionPipeline, folder_kind

ROOT = Path(__file__).resolve().parents[3]
JSB = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints" / "jsb-insertion"
EXAMPLE = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "examples" / "jsb_test000.mid"
#: Bound on the shipped model's framewise NLL over 8 held-out windows (1.80 measured with the
#: step-8000 weights; a uniform model over the 46 pitches and the rest scores 4 ln 47 = 15.4).
NLL_MAX = 2.5


@pytest.fixture(scope="module")
def pipe() -> VoiceInsertionPipeline:
    torch.set_num_threads(1)
    return VoiceInsertionPipeline.from_pretrained(JSB)


def chorale(index: int, steps: int) -> torch.Tensor:
    return load_jsb("test")[index][:, :steps]


def test_save_load_round_trip(pipe, tmp_path):
    saved = pipe.save_pretrained(tmp_path / "pipe", dtype=torch.float16)
    manifest = json.loads((saved / "pipeline.json").read_text())
    assert manifest["format"] == FORMAT and manifest["kind"] == "voice-insertion"
    assert manifest["stems"] == list(pipe.stems) and manifest["window"] == pipe.window
    assert {p.name for p in saved.iterdir()} == {"pipeline.json", "network", "text"}
    assert folder_kind(saved) == "voice-insertion"
    again = VoiceInsertionPipeline.from_pretrained(saved)
    for name, value in pipe.network.state_dict().items():
        assert torch.equal(value, again.network.state_dict()[name])  # float16-stored weights, both times
    tokens, given = chorale(3, 40)[None], torch.tensor([[True, False, True, True]])
    assert torch.equal(pipe.insert_tokens(tokens, given, seed=4), again.insert_tokens(tokens, given, seed=4))


def test_seeded_and_deterministic(pipe):
    tokens, given = chorale(2, 32)[None], torch.tensor([[True, True, False, True]])
    a, b, c = (pipe.insert_tokens(tokens, given, seed=s, steps=8) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_any_length_fills_only_the_hidden_voice(pipe):
    # 70 steps (not a multiple of the window, 32, nor of the downsampling, 4), padded to 72: windows
    # start at 0, 16, 32 (hop of half a window) and 40 (the last one ends at the end).
    tokens = chorale(4, 70)[None]
    given = torch.tensor([[True, True, True, False]])
    windows: list[tuple[int, int]] = []
    out = pipe.insert_tokens(tokens, given, seed=0, steps=8, on_window=lambda d, t: windows.append((d, t)))
    assert out.shape == tokens.shape and windows[-1] == (4, 4)
    assert torch.equal(out[:, :3], tokens[:, :3])  # given voices untouched
    bass = out[0, 3]
    assert (bass != REST).float().mean() > 0.8 and int(bass[bass != REST].max()) < int(out[0, 2].max())


def test_bad_input_is_refused_before_work(pipe):
    tokens, given = chorale(0, 32)[None], torch.tensor([[True, False, True, True]])
    with pytest.raises(PipelineError, match="--steps 0: give at least 1"):
        pipe.insert_tokens(tokens, given, steps=0)
    with pytest.raises(PipelineError, match=r"expected \(B, 4, T\)"):
        pipe.insert_tokens(tokens[:, :3], given[:, :3])
    with pytest.raises(
        PipelineError, match="--stem lead: the MIDI model jsb-insertion was trained with the stems"
    ):
        pipe.insert(EXAMPLE, ["lead"])
    with pytest.raises(PipelineError, match="no such MIDI file"):
        pipe.insert(EXAMPLE.with_name("missing.mid"), ["alto"])
    with pytest.raises(PipelineError, match="not a multiple of 4"):
        pipe.nll(chorale(0, 30)[None])


def test_insert_into_a_midi_file_keeps_the_other_tracks(pipe):
    before = load_midi(EXAMPLE)
    result = pipe.insert(EXAMPLE, ["tenor"], seed=0, steps=16)
    assert isinstance(result.midi, pretty_midi.PrettyMIDI) and result.targets == (2,)
    names = [inst.name for inst in result.midi.instruments]
    assert sorted(names) == ["alto", "bass", "soprano", "tenor"]
    for inst in before.instruments:
        if inst.name != "tenor":
            kept = next(i for i in result.midi.instruments if i.name == inst.name)
            assert [(n.pitch, n.start) for n in kept.notes] == [(n.pitch, n.start) for n in inst.notes]
    tenor = next(i for i in result.midi.instruments if i.name == "tenor")
    assert len(tenor.notes) > 10
    # The new tenor sits between the given bass and alto most of the time (the chorale texture).
    read = read_voice_song(result.midi, pipe.stems)
    alto, ten, bass = read.tokens[1], read.tokens[2], read.tokens[3]
    sounding = (alto != REST) & (ten != REST) & (bass != REST)
    inside = ((ten <= alto) & (ten >= bass))[sounding].float().mean()
    assert float(inside) > 0.8


def test_held_out_nll_is_far_below_uniform(pipe):
    windows = torch.stack([load_jsb("test")[i][:, :32] for i in range(8)])
    nll = pipe.nll(windows, seed=0)
    assert nll.shape == (8,) and float(nll.mean()) < NLL_MAX


def test_inserted_voices_have_no_parallels_with_the_given_ones(pipe):
    piece = chorale(9, 48)
    given = ~torch.eye(4, dtype=torch.bool)  # row v: voice v removed

    def parallels_of_inserted(no_parallels: bool) -> list[int]:
        filled = pipe.insert_tokens(
            piece[None].expand(4, -1, -1).clone(), given, seed=0, no_parallels=no_parallels
        )
        counts = []
        for voice in range(4):
            completed, silent = filled[voice].clone(), filled[voice].clone()
            assert torch.equal(completed[given[voice]], piece[given[voice]])  # given voices untouched
            assert (completed[voice] != REST).float().mean() > 0.5  # a voice, not silence
            silent[voice] = REST
            counts.append(
                sum(parallel_fifths_octaves(completed).values())
                - sum(parallel_fifths_octaves(silent).values())
            )
        return counts

    assert sum(parallels_of_inserted(False)) > 0  # the unconstrained model writes some here
    assert parallels_of_inserted(True) == [0, 0, 0, 0]


def test_each_pipeline_class_refuses_the_other_kind(pipe):
    demo = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints" / "demo-audio"
    with pytest.raises(PipelineError, match="not a MIDI insertion model"):
        VoiceInsertionPipeline.from_pretrained(demo)
    with pytest.raises(PipelineError, match="not an audio"):
        MultiTrackPipeline.from_pretrained(JSB)

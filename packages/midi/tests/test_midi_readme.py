"""The README's opening example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pretty_midi

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    assert "('soprano', 'alto', 'tenor', 'bass') (4, 192, 128)" in capsys.readouterr().out
    assert len(pretty_midi.PrettyMIDI(str(tmp_path / "chorale.mid")).instruments) == 4

"""The README's opening example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "(4, 80000) True"
    stem, instruction = lines[1].split(" | ")
    assert stem in ("soprano", "alto", "tenor", "bass") and len(instruction.split()) > 5
    assert sorted(p.name for p in (tmp_path / "jsb_slakh" / "train").iterdir()) == [
        "Track00001",
        "Track00002",
    ]

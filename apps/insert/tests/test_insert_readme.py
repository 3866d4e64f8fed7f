"""The README's Python example runs as written (in a temporary working folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(README), "exec"), {})
    assert capsys.readouterr().out.strip() == "['readme_tenor.mid', 'readme_tenor.wav', 'readme_tenor.png']"
    for suffix in (".mid", ".wav", ".png"):
        assert (tmp_path / "out" / f"readme_tenor{suffix}").stat().st_size > 0

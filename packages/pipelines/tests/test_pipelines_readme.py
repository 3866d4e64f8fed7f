"""The README's opening example runs as written (from the repository root) and prints what it claims."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(monkeypatch) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None, "README.md must open with a python example"
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), str(README), "exec"), {})
    assert (
        out.getvalue().strip()
        == "{'soprano': (32000,), 'alto': (32000,), 'tenor': (32000,), 'bass': (32000,)}"
    )


def test_readme_midi_example_runs(monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(block for block in blocks if "VoiceInsertionPipeline" in block)
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    assert out.getvalue().strip() == "['soprano', 'tenor', 'bass', 'alto'] (4, 228)"

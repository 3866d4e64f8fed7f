"""Every Python block of the README runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_opens_with_a_short_example() -> None:
    text = README.read_text()
    first = blocks()[0]
    assert text.index("```python") < 40 and len(first.strip().splitlines()) <= 12


def test_readme_examples_run() -> None:
    torch.manual_seed(0)
    found = blocks()
    assert len(found) == 3
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(found[0], str(README), "exec"), namespace)
    assert out.getvalue().strip() == "torch.Size([2, 4, 8, 32, 16])"
    assert namespace["latents"].dtype == torch.float32
    for block in found[1:]:
        exec(compile(block, str(README), "exec"), {})

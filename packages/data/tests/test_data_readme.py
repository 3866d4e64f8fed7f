"""The README's examples run as written: the opening example, then the latent cache example that
continues it."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    opening, cache_example = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(opening, str(README), "exec"), namespace)
    exec(compile(cache_example, str(README), "exec"), namespace)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "(4, 80000) True"
    stem, instruction = lines[1].split(" | ")
    assert stem in ("soprano", "alto", "tenor", "bass") and len(instruction.split()) > 5
    assert sorted(p.name for p in (tmp_path / "jsb_slakh" / "train").iterdir()) == [
        "Track00001",
        "Track00002",
    ]
    assert len(namespace["ds"]) > 2 and lines[2] == f"{len(namespace['ds'])} (4, 1, 250, 1) (1, 250, 1)"
    cache = namespace["cache"]
    torch.testing.assert_close(
        cache[1]["mix"], namespace["encode"](namespace["ds"][1]["mix"][None, None])[0, 0]
    )
    assert sorted(p.name for p in (tmp_path / "jsb_latents").iterdir()) == ["index.json", "train"]

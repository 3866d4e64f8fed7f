"""The README example runs as written (from the repository root, where its fixture paths point)."""

import re
from pathlib import Path

import torch


def test_readme_example_runs(capsys, monkeypatch):
    package = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(package.parents[1])
    code = re.search(r"```python\n(.*?)```", (package / "README.md").read_text(), re.S).group(1)  # type: ignore[union-attr]
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    # The shared fixture is ~12 s: five 4 s windows, three 3 s musicnn patches per stem.
    assert re.search(r"'num_windows': [1-9]", out) and "'soprano'" in out
    assert "FAD[musicnn-MSD-max_pool]" in out and re.search(r"n_ref=(\d+), n_eval=\1\)", out)

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
    assert "'num_windows': 5.0" in out and "'soprano'" in out
    assert "FAD[musicnn-MSD-max_pool]" in out and "n_ref=12, n_eval=12" in out

"""The README example runs as written."""

import re
from pathlib import Path


def test_readme_example_runs(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "'text_pooled'" in out and "torch.Size([1, 384])" in out

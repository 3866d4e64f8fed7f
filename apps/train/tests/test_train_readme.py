"""The README's example runs as written (in a fresh process: it initialises torch.distributed)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_readme_example_runs(tmp_path):
    text = (ROOT / "apps" / "train" / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("/tmp/stemforge-readme", str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (
        "2 stemforge.train.tasks.midi.VoiceInsertionModel ['soprano', 'alto', 'tenor', 'bass']" in proc.stdout
    )
    assert (tmp_path / "export" / "model.safetensors").is_file()

"""The models and the example that ship inside the app."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from stemforge.insert.errors import InsertError


def _bundled(*parts: str) -> Path:
    path = Path(str(resources.files("stemforge.insert").joinpath(*parts)))
    if not path.exists():
        raise InsertError(
            f"the embedded {'/'.join(parts)} is missing from this installation; reinstall stemforge-insert "
            "or pass --checkpoint"
        )
    return path


def jsb_checkpoint() -> Path:
    """The MIDI insertion model trained on the JSB chorales (see the README for its reproduction)."""
    return _bundled("checkpoints", "jsb-insertion")


def demo_audio_checkpoint() -> Path:
    """The demonstration audio pipeline: a tiny MSG-LD on a waveform codec, trained on rendered chorales."""
    return _bundled("checkpoints", "demo-audio")


def example_chorale() -> Path:
    """A held-out JSB chorale (test split #0) as a four-track MIDI file."""
    return _bundled("examples", "jsb_test000.mid")

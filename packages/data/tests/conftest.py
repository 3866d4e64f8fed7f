"""Shared real data for stemforge-data's tests: the fixture MIDI files rendered to Slakh format once."""

from __future__ import annotations

from pathlib import Path

import pytest

from stemforge.data import RenderConfig, render_jsb, render_midi_folder

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def slakh_root(tmp_path_factory) -> Path:
    """tests/fixtures/midi rendered at 16 kHz into train/ (4 tracks) and two JSB chorales into test/."""
    root = tmp_path_factory.mktemp("slakh")
    render_midi_folder(FIXTURES / "midi", root, "train", config=RenderConfig(sample_rate=16000), seed=5)
    render_jsb(root, "test", limit=2, config=RenderConfig(sample_rate=16000, program_policy="keep"))
    return root

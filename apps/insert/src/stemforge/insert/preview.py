"""Rendered previews: a MIDI file through stemforge-data's SoundFont renderer (tinysoundfont when it
is installed, else midirenderer, a dependency of stemforge-data)."""

from __future__ import annotations

from typing import Any

import torch

from stemforge.insert.errors import InsertError


def render_preview(midi: Any, sample_rate: int = 22050, soundfont: str | None = None) -> torch.Tensor:
    """The mix (N,) of every track rendered with the tracks' own programs."""
    from stemforge.data import RenderConfig, RenderError, render_midi

    try:
        track = render_midi(
            midi, config=RenderConfig(sample_rate=sample_rate, soundfont=soundfont, program_policy="keep")
        )
    except RenderError as err:
        raise InsertError(f"preview: {err}") from err
    except ImportError as err:
        from stemforge.data import renderer_problem

        raise InsertError(f"preview: {renderer_problem() or err}; or pass --no-preview") from err
    return torch.from_numpy(track.mix())

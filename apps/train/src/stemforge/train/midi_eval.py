"""Framewise NLL of an exported MIDI insertion model on a JSB split, with stemforge-samplers' exact
chain-rule evaluator (one random order of the 4 x T voice tokens per window).

Protocol (stated with every figure): windows of ``length`` 16th-note steps, either the first window
of every chorale (``windows="first"``) or all non-overlapping windows (``"all"``); NLL summed over the
four voices and divided by the number of frames (Coconet's "framewise" NLL, Huang et al. 2017,
section 7), averaged over windows. Windows are scored without context outside them, so the figure is
an upper bound of the NLL of whole chorales under the same model.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import torch


def jsb_windows(split: str, length: int, windows: Literal["first", "all"]) -> torch.Tensor:
    from stemforge.midi import load_jsb

    out = []
    for chorale in load_jsb(split):  # type: ignore[arg-type]
        starts = [0] if windows == "first" else range(0, chorale.shape[-1] - length + 1, length)
        out += [chorale[:, s : s + length] for s in starts if chorale.shape[-1] >= s + length]
    return torch.stack(out)


@torch.no_grad()
def jsb_framewise_nll(
    model: Any,
    split: str,
    *,
    length: int = 32,
    windows: Literal["first", "all"] = "first",
    batch_size: int = 128,
    seed: int = 0,
    max_windows: int | None = None,
) -> dict[str, Any]:
    from stemforge.samplers.discrete_nll import chain_rule_nll, nats_per_frame

    data = jsb_windows(split, length, windows)
    if max_windows is not None:
        data = data[:max_windows]
    gen = torch.Generator().manual_seed(seed)
    per_window = []
    start = time.perf_counter()
    for i in range(0, data.shape[0], batch_size):
        x = data[i : i + batch_size]
        total = chain_rule_nll(model, x, kind="categorical", generator=gen)
        per_window.append(nats_per_frame(total, length))
    values = torch.cat(per_window).double()
    return {
        "split": split,
        "windows": windows,
        "window_length": length,
        "num_windows": int(values.numel()),
        "framewise_nll": float(values.mean()),
        "stderr": float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else float("nan"),
        "seconds": time.perf_counter() - start,
        "seed": seed,
    }


def load_midi_model(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The network of a MIDI insertion model (a voice-insertion pipeline folder, or a folder of
    `stemforge-train export`) and what is known of it (``step``, ``stem_names``, ``window``)."""
    from stemforge.pipelines import PipelineError, VoiceInsertionPipeline

    try:
        pipe = VoiceInsertionPipeline.from_pretrained(Path(folder))
    except PipelineError as err:
        raise ValueError(str(err)) from err
    return pipe.network, {"step": pipe.step, "stem_names": list(pipe.stems), "window": pipe.window}

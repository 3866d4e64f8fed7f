"""What every command checks before it loads a model: the checkpoint folder's kind, stems and
schedule (read from its JSON, no weights), and the options that need no model at all.

A real checkpoint takes seconds to minutes to load and sampling takes longer, so a wrong stem name,
a MIDI model given to an audio command or a negative guidance scale is refused from the folder's
``pipeline.json`` (or a ``stemforge-train export``'s ``config.json``) first. The pipelines check the
same again once loaded; these checks only move the refusal before the work.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stemforge.insert.errors import InsertError
from stemforge.pipelines import PipelineError

Kind = Literal["multitrack", "voice-insertion"]
#: Why a folder of the other kind is refused, by the kind the command needs.
_WRONG_KIND = {
    "multitrack": "holds a voice-insertion pipeline, not an audio (multitrack) one; the audio commands take "
    "audio checkpoints and `midi` takes this one",
    "voice-insertion": "holds an audio (multitrack) model, not a MIDI insertion model; `midi` takes a "
    "voice-insertion pipeline (without --checkpoint, the embedded one) and the audio commands take this one",
}


@dataclass(frozen=True)
class CheckpointInfo:
    """A model folder as its JSON describes it. ``stems`` and ``num_train_steps`` are None where
    the JSON does not say (the loaded model is checked then)."""

    path: Path
    kind: Kind
    stems: tuple[str, ...] | None
    num_train_steps: int | None = None
    steps_per_quarter: int = 4
    option: str = "--checkpoint"

    def check_stem(self, stem: str, option: str = "--stem") -> None:
        if self.stems is not None and stem not in self.stems:
            raise InsertError(
                f"{option} {stem}: the checkpoint {self.path} was trained with the stems "
                f"{', '.join(self.stems)}; choose one of them, or give a checkpoint trained with {stem!r} "
                "with --checkpoint"
            )

    def check_steps(self, steps: int | None) -> None:
        if steps is not None and self.num_train_steps is not None and steps > self.num_train_steps:
            raise InsertError(
                f"--steps {steps}: the checkpoint was trained with {self.num_train_steps} diffusion steps; "
                f"give at most {self.num_train_steps}"
            )


def _json(path: Path, option: str, folder: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InsertError(
            f"{option} {folder}: {path.name} is not readable JSON ({err}); write or export the model again"
        ) from err
    if not isinstance(data, dict):
        raise InsertError(
            f"{option} {folder}: {path.name} is not a JSON object; write or export the model again"
        )
    return data


def _stems(names: Any, target: Any) -> tuple[str, ...] | None:
    """The stems a folder's JSON lists (an accompaniment model's target among them), or None."""
    if not isinstance(names, list) or not names:
        return None
    stems = tuple(str(s) for s in names)
    return stems if not target or str(target) in stems else (*stems, str(target))


def _steps(schedule: Any) -> int | None:
    if isinstance(schedule, dict) and isinstance(schedule.get("num_steps"), int):
        return int(schedule["num_steps"])
    return None


def peek_checkpoint(path: Path, want: Kind | None = None, *, option: str = "--checkpoint") -> CheckpointInfo:
    """What the model folder ``path`` holds, from its JSON alone; ``want``: the kind the command
    needs (None: any model that runs a task)."""
    from stemforge.pipelines.format import read_manifest

    path = Path(path)
    if not path.exists():
        raise InsertError(
            f"{option} {path}: no such folder; give a pipeline folder (pipeline.json) or a folder written by "
            "`stemforge-train export`"
        )
    if not path.is_dir():
        raise InsertError(
            f"{option} {path}: is a file; give the model's folder (the one holding pipeline.json or "
            "config.json), not a file"
        )
    if (path / "pipeline.json").is_file():
        try:
            manifest = read_manifest(path)
        except PipelineError as err:
            raise InsertError(f"{option} {err}") from err
        kind = str(manifest["kind"])
        info = CheckpointInfo(
            path,
            kind,  # type: ignore[arg-type]
            _stems(manifest.get("stems"), manifest.get("target_stem")),
            _steps(manifest.get("schedule")),
            int(manifest.get("steps_per_quarter", 4)),
            option,
        )
    elif (path / "config.json").is_file():
        config = _json(path / "config.json", option, path)
        task = config.get("task")
        if task not in ("ldm", "midi"):  # as stemforge-pipelines' folder_kind decides
            what = config.get("kind") or task or config.get("format") or "unknown"
            above = path.parent if (path.parent / "pipeline.json").is_file() else None
            hint = (
                f"give the pipeline folder that holds it ({above})"
                if above is not None
                else "give the folder of a model that runs a task (a pipeline folder or a `stemforge-train "
                "export` of an LDM or MIDI run)"
            )
            raise InsertError(
                f"{option} {path}: holds a {what} component, not a model that runs a task; {hint}"
            )
        info = CheckpointInfo(
            path,
            "multitrack" if task == "ldm" else "voice-insertion",
            _stems(config.get("stem_names"), config.get("target_stem")),
            _steps(config.get("schedule")),
            int(config.get("steps_per_quarter", 4)),
            option,
        )
    else:
        raise InsertError(
            f"{option} {path}: neither pipeline.json nor config.json is there, so it is not a model folder; "
            "give a folder written by `stemforge-insert convert`, save_pretrained or `stemforge-train export`"
        )
    if want is not None and info.kind != want:
        raise InsertError(f"{option} {path}: {_WRONG_KIND[want]}; give another {option}")
    return info


def check_non_negative(option: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise InsertError(f"{option} {value}: give a value >= 0 (0 turns guidance off)")


def check_fraction(option: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise InsertError(f"{option} {value}: give a value in [0, 1]")


def check_positive(option: str, value: float | None, unit: str = "") -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InsertError(f"{option} {value}: give a positive value{unit}")


def check_midi_options(steps: int | None, temperature: float) -> None:
    """The MIDI sampler's options (VoiceInsertionPipeline.check_options, before loading)."""
    if steps is not None and steps < 1:
        raise InsertError(f"--steps {steps}: give at least 1 (or leave it out: one token per model call)")
    if not (math.isfinite(temperature) and temperature > 0):
        raise InsertError(f"--temperature {temperature}: give a value > 0 (1 samples the model as trained)")

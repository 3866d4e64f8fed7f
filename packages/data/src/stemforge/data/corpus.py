"""Embedded audio corpora: the JSB chorales (or any folder of MIDI files) rendered to Slakh format.

Each chorale's four SATB voices become four stems named soprano, alto, tenor and bass, played by
configurable General MIDI programs (``stemforge.midi.JSB_PROGRAMS`` by default: flute, oboe,
clarinet, bassoon) and rendered by ``render.py``. JSB's ``valid`` split is written as Slakh's
``validation`` folder. Tracks are numbered from Track00001 in the order of the source.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Literal

from stemforge.data.render import RenderConfig, render_midi, resolve_backend
from stemforge.data.slakh_format import SlakhFormatError, read_metadata, write_slakh_track
from stemforge.midi import JSB_PROGRAMS, JSB_SPLITS, JSB_STEMS, jsb_midi, load_jsb, load_midi

#: JSB split name -> Slakh split folder.
JSB_TO_SLAKH: Mapping[str, str] = {"train": "train", "valid": "validation", "test": "test"}
MIDI_SUFFIXES = (".mid", ".midi")

Progress = Callable[[int, int, str], None]
Existing = Literal["error", "skip", "overwrite"]
Task = tuple[Callable[..., Path], tuple]


def _keep_existing(track_dir: Path, source: str, config: RenderConfig, seed: int, existing: Existing) -> bool:
    """True when ``track_dir`` exists and is kept as it is; raises when it may not be kept."""
    if not track_dir.exists() or existing == "overwrite":
        return False
    if existing == "error":
        raise SlakhFormatError(f"{track_dir}: already exists; remove it, skip it or overwrite it")
    try:
        meta = read_metadata(track_dir).metadata
    except SlakhFormatError as err:
        raise SlakhFormatError(
            f"{track_dir}: exists but is not a complete track ({err}); overwrite it"
        ) from err
    render = meta.get("render", {})
    # The backend in the metadata is the synthesiser that rendered the track (tracks written before
    # there was a choice were rendered by tinysoundfont); "auto" is compared by what it resolves to.
    same = (
        meta.get("lmd_midi_dir") == source
        and render.get("seed") == seed
        and all(render.get(k) == v for k, v in config.to_dict().items() if k != "backend")
        and render.get("backend", "tinysoundfont") == resolve_backend(config.backend)
    )
    if not same:
        raise SlakhFormatError(
            f"{track_dir}: exists with another source or other render settings; overwrite it or choose another folder"
        )
    return True


def _jsb_track(
    split: str,
    index: int,
    programs: Mapping[str, int],
    bpm: float,
    config: RenderConfig,
    seed: int,
    path: Path,
) -> Path:
    midi = jsb_midi(split, index, programs=programs, bpm=bpm)  # type: ignore[arg-type]
    track = render_midi(midi, config=config, seed=seed, stem_names=JSB_STEMS)
    return write_slakh_track(track, midi, path, source=f"jsb:{split}:{index}", overwrite=True)


def _midi_file_track(midi_path: Path, source: str, config: RenderConfig, seed: int, path: Path) -> Path:
    midi = load_midi(midi_path)
    track = render_midi(midi, config=config, seed=seed)
    return write_slakh_track(track, midi, path, source=source, overwrite=True)


def _execute(
    todo: list[Task],
    *,
    jobs: int,
    done: int,
    total: int,
    progress: Progress | None,
) -> None:
    """Run the render tasks in this process (jobs=1) or in ``jobs`` worker processes (spawned:
    every task is deterministic from its own seed, so the output does not depend on ``jobs``)."""
    if jobs < 1:
        raise ValueError(f"jobs={jobs}; give a positive number of worker processes")
    if jobs == 1 or len(todo) < 2:
        for fn, args in todo:
            path = fn(*args)
            done += 1
            if progress is not None:
                progress(done, total, path.name)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context) as pool:
        futures = [pool.submit(fn, *args) for fn, args in todo]
        try:
            for future in as_completed(futures):
                path = future.result()  # a worker's error is raised here
                done += 1
                if progress is not None:
                    progress(done, total, path.name)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def render_jsb(
    out_dir: str | os.PathLike[str],
    split: str = "train",
    *,
    limit: int | None = None,
    config: RenderConfig | None = None,
    programs: Mapping[str, int] = JSB_PROGRAMS,
    seed: int = 0,
    bpm: float = 100.0,
    existing: Existing = "error",
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[Path]:
    """Render JSB chorales of ``split`` to ``out_dir/<slakh split>/TrackNNNNN``; returns the track folders.

    The default config keeps the voices' programs (``program_policy="keep"``).
    ``existing``: what to do with a track folder that is already there: "error", "skip" (keep it
    when it was rendered from the same chorale with the same settings, so an interrupted run
    resumes; raise otherwise) or "overwrite". ``jobs`` > 1 renders in that many worker processes
    (same files as one process). ``progress(done, total, name)`` is called after each track.
    """
    if split not in JSB_SPLITS:
        raise ValueError(f"render_jsb: split={split!r}; use one of {JSB_SPLITS}")
    if limit is not None and limit < 1:
        raise ValueError(f"render_jsb: limit={limit}; give a positive number of chorales")
    config = config or RenderConfig(program_policy="keep")
    count = len(load_jsb(split))  # type: ignore[arg-type]
    total = count if limit is None else min(limit, count)
    folder = Path(out_dir) / JSB_TO_SLAKH[split]
    written: list[Path] = []
    todo: list[Task] = []
    for index in range(total):
        path, source = folder / f"Track{index + 1:05d}", f"jsb:{split}:{index}"
        if _keep_existing(path, source, config, seed + index, existing):
            if progress is not None:
                progress(len(written) - len(todo) + 1, total, path.name)
        else:
            todo.append((_jsb_track, (split, index, dict(programs), bpm, config, seed + index, path)))
        written.append(path)
    _execute(todo, jobs=jobs, done=total - len(todo), total=total, progress=progress)
    return written


def find_midi_files(src_dir: str | os.PathLike[str]) -> list[Path]:
    """The .mid/.midi files under ``src_dir`` (recursively), sorted."""
    src = Path(src_dir)
    if not src.is_dir():
        raise ValueError(f"{src}: no such folder; give a folder of MIDI files")
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def render_midi_folder(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    split: str = "train",
    *,
    limit: int | None = None,
    config: RenderConfig | None = None,
    seed: int = 0,
    existing: Existing = "error",
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[Path]:
    """Render every MIDI file under ``src_dir`` to ``out_dir/split/TrackNNNNN`` (Slakh format).

    Every file is validated first (``stemforge.midi.load_midi``), so a bad file stops the run with
    its name before anything is written. ``existing`` and ``jobs`` as in :func:`render_jsb`.
    """
    files = find_midi_files(src_dir)
    if not files:
        raise ValueError(f"{src_dir}: no .mid or .midi files found; give a folder of MIDI files")
    if limit is not None:
        files = files[:limit]
    for path in files:  # validate every file first: a bad one stops the run before any write
        load_midi(path)
    config = config or RenderConfig()
    folder = Path(out_dir) / split
    written: list[Path] = []
    todo: list[Task] = []
    for index, path in enumerate(files):
        out, source = folder / f"Track{index + 1:05d}", str(path.relative_to(src_dir))
        if _keep_existing(out, source, config, seed + index, existing):
            if progress is not None:
                progress(len(written) - len(todo) + 1, len(files), out.name)
        else:
            todo.append((_midi_file_track, (path, source, config, seed + index, out)))
        written.append(out)
    _execute(todo, jobs=jobs, done=len(files) - len(todo), total=len(files), progress=progress)
    return written

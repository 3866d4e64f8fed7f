"""``stemforge-train data``: render MIDI corpora to Slakh format and inspect Slakh-format folders.

stemforge-train data render --source jsb --split train --out DIR [--soundfont PATH]
    [--renderer auto|tinysoundfont|midirenderer] [--sample-rate 16000] [--limit N] [--seed S]
    [--programs ...] [--jobs N] [--overwrite]
stemforge-train data render --source MIDI_DIR --split train --out DIR ...
stemforge-train data info DIR [--all]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from stemforge.data import (
    JSB_TO_SLAKH,
    SLAKH_SPLITS,
    AudioError,
    RenderConfig,
    RenderError,
    SlakhFormatError,
    audio_info,
    backend_version,
    find_midi_files,
    read_metadata,
    render_jsb,
    render_midi_folder,
    renderer_problem,
    resolve_backend,
    resolve_soundfont,
)
from stemforge.midi import JSB_PROGRAMS, JSB_SPLITS, JSB_STEMS, MidiError, load_midi
from stemforge.train.cli import UserError

#: Rows of the per-track table shown by ``data info`` without ``--all``.
MAX_ROWS = 12


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="prepare and inspect Slakh-format audio corpora")
    commands = data.add_subparsers(dest="data_command", required=True)

    render = commands.add_parser(
        "render",
        help="render the embedded JSB chorales or a folder of MIDI files to Slakh format",
        description="Render MIDI to one audio file per stem with a General MIDI SoundFont, in Slakh2100's layout.",
    )
    render.add_argument(
        "--source", required=True, help="'jsb' (the embedded chorales) or a folder of .mid files"
    )
    render.add_argument(
        "--split",
        default="train",
        help="JSB split (train, valid, test) or, for a MIDI folder, the output split folder (train, validation, test)",
    )
    render.add_argument("--out", required=True, type=Path, help="root folder of the Slakh-format output")
    render.add_argument("--soundfont", default=None, help="a .sf2 path, or 'fluidr3_gm' (default: TimGM6mb)")
    render.add_argument(
        "--renderer",
        choices=("auto", "tinysoundfont", "midirenderer"),
        default="auto",
        help="the SoundFont synthesiser (default auto: tinysoundfont when installed, else midirenderer); "
        "recorded in each track's metadata.yaml",
    )
    render.add_argument(
        "--sample-rate", type=int, default=16000, help="output sample rate in Hz (default 16000)"
    )
    render.add_argument("--limit", type=int, default=None, help="render at most N pieces")
    render.add_argument("--seed", type=int, default=0, help="seed of the preset draws (default 0)")
    render.add_argument(
        "--jobs", type=int, default=1, help="worker processes (default 1); the files do not depend on it"
    )
    render.add_argument(
        "--programs",
        default=None,
        help="General MIDI programs of the JSB voices, e.g. soprano=73,alto=68,tenor=71,bass=70 (the default)",
    )
    render.add_argument(
        "--overwrite",
        action="store_true",
        help="replace tracks that already exist (default: keep those rendered from the same source with the "
        "same settings, so an interrupted run resumes, and stop on any other)",
    )
    render.set_defaults(func=run_render)

    info = commands.add_parser(
        "info", help="summarise a Slakh-format folder: tracks, stems, durations, splits"
    )
    info.add_argument("root", type=Path, help="root folder of a Slakh-format dataset")
    info.add_argument(
        "--all", action="store_true", help=f"list every track (default: the first {MAX_ROWS} per split)"
    )
    info.set_defaults(func=run_info)


def _console() -> Console:
    # No emoji or markup guessing: a source such as "jsb:train:0" must print as written.
    return Console(emoji=False, highlight=False)


def _check_out(out: Path) -> None:
    from stemforge.train.preflight import writable_ancestor

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; give a folder for --out")
    writable_ancestor(out, "--out", folder=True)


def _parse_programs(text: str | None) -> dict[str, int]:
    programs = dict(JSB_PROGRAMS)
    if text is None:
        return programs
    named: set[str] = set()
    for item in text.split(","):
        voice, _, value = item.partition("=")
        voice = voice.strip()
        if voice not in JSB_STEMS or not value.strip().isdigit() or not 0 <= int(value) <= 127:
            raise UserError(
                f"--programs {text!r}: write VOICE=PROGRAM pairs with voices {', '.join(JSB_STEMS)} "
                "and General MIDI programs 0-127, e.g. soprano=73,bass=70"
            )
        if voice in named:
            raise UserError(f"--programs {text!r}: {voice} is named twice; give each voice once")
        named.add(voice)
        programs[voice] = int(value)
    return programs


def _check_render(args: argparse.Namespace) -> tuple[RenderConfig, dict[str, int] | None, list[Path]]:
    """Every option, the SoundFont, the source's MIDI files and the output place, before rendering:
    the render settings, the JSB programs (None for a MIDI folder) and the MIDI files to render
    (empty for JSB)."""
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: give a positive number of pieces")
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give a positive number of worker processes")
    problem = renderer_problem(args.renderer)
    if problem is not None:  # before any work
        raise UserError(f"--renderer {args.renderer}: {problem}")
    try:
        resolve_soundfont(args.soundfont)
    except RenderError as err:
        raise UserError(f"--soundfont {err}") from err
    try:
        config = RenderConfig(
            sample_rate=args.sample_rate,
            soundfont=args.soundfont,
            program_policy="keep" if args.source == "jsb" else "family",
            backend=args.renderer,
        )
    except ValueError as err:
        raise UserError(f"--sample-rate {args.sample_rate}: {err}") from err
    programs, files = None, []
    if args.source == "jsb":
        if args.split not in JSB_SPLITS:
            raise UserError(f"--split {args.split!r}: the JSB chorales have splits {', '.join(JSB_SPLITS)}")
        programs = _parse_programs(args.programs)
    else:
        if args.programs is not None:
            raise UserError("--programs applies to --source jsb; a MIDI folder keeps its tracks' programs")
        source = Path(args.source)
        if not source.exists():
            raise UserError(
                f"--source {args.source!r}: no such folder; give 'jsb' or an existing folder of MIDI files"
            )
        if not source.is_dir():
            raise UserError(
                f"--source {args.source!r}: is a file; give 'jsb' or the folder that holds the MIDI files"
            )
        if args.split not in SLAKH_SPLITS:
            raise UserError(f"--split {args.split!r}: for a MIDI folder use one of {', '.join(SLAKH_SPLITS)}")
        files = find_midi_files(source)[: args.limit]
        if not files:
            raise UserError(
                f"--source {source}: no .mid or .midi files found; give a folder that holds MIDI files"
            )
        for path in files:  # every file before any is rendered (render_midi_folder checks them again)
            try:
                load_midi(path)
            except MidiError as err:
                raise UserError(f"--source {source}: {err} (or remove the file from the folder)") from err
    _check_out(args.out)
    return config, programs, files


def run_render(args: argparse.Namespace) -> int:
    console = _console()
    config, programs, files = _check_render(args)
    backend = resolve_backend(args.renderer)
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]rendering[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    try:
        if args.source == "jsb":
            from stemforge.midi import load_jsb

            total = len(load_jsb(args.split))
            count = total if args.limit is None else min(args.limit, total)
            split_folder = JSB_TO_SLAKH[args.split]
            with progress:
                task = progress.add_task(f"JSB {args.split}", total=count)
                render_jsb(
                    args.out,
                    args.split,
                    limit=args.limit,
                    config=config,
                    programs=programs or JSB_PROGRAMS,
                    seed=args.seed,
                    existing="overwrite" if args.overwrite else "skip",
                    jobs=args.jobs,
                    progress=lambda done, _total, _name: progress.update(task, completed=done),
                )
        else:
            source = Path(args.source)
            count = len(files)
            split_folder = args.split
            with progress:
                task = progress.add_task(str(source), total=count)
                render_midi_folder(
                    source,
                    args.out,
                    args.split,
                    limit=args.limit,
                    config=config,
                    seed=args.seed,
                    existing="overwrite" if args.overwrite else "skip",
                    jobs=args.jobs,
                    progress=lambda done, _total, _name: progress.update(task, completed=done),
                )
    except SlakhFormatError as err:
        # A track already there with other settings: found before any track is rendered.
        fix = "" if args.overwrite else " (--overwrite replaces the tracks already in --out)"
        raise UserError(f"{err}{fix}") from err
    except (MidiError, RenderError, AudioError) as err:
        raise UserError(str(err)) from err
    elapsed = time.perf_counter() - started
    console.print(
        f"{count} tracks in {args.out / split_folder} ({elapsed:.1f} s, {backend} {backend_version(backend)})"
    )
    _print_summary(console, args.out, show_all=False)
    return 0


def _track_rows(root: Path) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for split in (*SLAKH_SPLITS, "omitted"):
        folder = root / split
        if not folder.is_dir():
            continue
        for track_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                info = read_metadata(track_dir)
            except SlakhFormatError as err:
                raise UserError(
                    f"{err}; restore the track, or render it again with `stemforge-train data render --overwrite`"
                ) from err
            mix = track_dir / "mix.flac"
            rendered = [s.path for s in info.stems if s.audio_rendered and s.path.is_file()]
            audio = mix if mix.is_file() else (rendered[0] if rendered else None)
            frames = rate = 0
            if audio is not None:
                try:
                    frames, rate, _ = audio_info(audio)
                except AudioError as err:
                    raise UserError(
                        f"{audio}: cannot read it as audio (not a WAV, FLAC or OGG file, or its header is "
                        "damaged); restore the track, or render it again with `stemforge-train data render "
                        "--overwrite`"
                    ) from err
            stems = [
                (s.stem_name or s.inst_class.lower()) + ("" if s.audio_rendered else " (not rendered)")
                for s in info.stems
            ]
            rows[split].append(
                {
                    "name": track_dir.name,
                    "seconds": frames / rate if rate else 0.0,
                    "rate": rate,
                    "stems": stems,
                    "classes": [s.inst_class for s in info.stems if s.audio_rendered],
                    "source": str(info.metadata.get("lmd_midi_dir", "")),
                }
            )
    return rows


def _print_summary(console: Console, root: Path, *, show_all: bool) -> None:
    rows = _track_rows(root)
    if not rows:
        raise UserError(
            f"{root}: not a Slakh-format folder (no {'/'.join(SLAKH_SPLITS)} folders holding TrackNNNNN/metadata.yaml); "
            "create one with `stemforge-train data render`"
        )
    for split, tracks in rows.items():
        table = Table(title=f"{root / split}", title_justify="left")
        for column in ("track", "duration", "rate", "stems", "source"):
            table.add_column(column, justify="right" if column in ("duration", "rate") else "left")
        shown = tracks if show_all else tracks[:MAX_ROWS]
        for row in shown:
            table.add_row(
                row["name"],
                f"{row['seconds']:.1f} s",
                f"{row['rate']} Hz",
                ", ".join(row["stems"]),
                row["source"],
            )
        if len(shown) < len(tracks):
            table.add_row(f"... {len(tracks) - len(shown)} more", "", "", "", "(--all lists them)")
        console.print(table)
    summary = Table(title="summary", title_justify="left")
    for column in ("split", "tracks", "hours", "mean length", "stems per track", "stem classes"):
        summary.add_column(column)
    for split, tracks in rows.items():
        seconds = sum(r["seconds"] for r in tracks)
        classes: dict[str, int] = defaultdict(int)
        for r in tracks:
            for c in set(r["classes"]):
                classes[c] += 1
        summary.add_row(
            split,
            str(len(tracks)),
            f"{seconds / 3600:.2f}",
            f"{seconds / max(len(tracks), 1):.1f} s",
            f"{sum(len(r['stems']) for r in tracks) / max(len(tracks), 1):.1f}",
            ", ".join(f"{c} ({n})" for c, n in sorted(classes.items())),
        )
    console.print(summary)


def run_info(args: argparse.Namespace) -> int:
    root: Path = args.root
    if not root.exists():
        raise UserError(f"{root}: no such folder; give the root of a Slakh-format dataset")
    if not root.is_dir():
        raise UserError(f"{root}: is a file; give the root folder of a Slakh-format dataset")
    _print_summary(_console(), root, show_all=args.all)
    return 0

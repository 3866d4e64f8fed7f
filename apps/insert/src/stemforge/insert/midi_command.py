"""The ``midi`` command end to end: read, insert, write the MIDI, its rendered preview and a PNG."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from stemforge.insert.errors import InsertError
from stemforge.insert.outputs import StagedOutputs
from stemforge.insert.progress import Reporter
from stemforge.midi import VoiceSong
from stemforge.pipelines import PipelineError, VoiceInsertionPipeline


def parse_stems(stem: str | None, stems: str | None) -> list[str]:
    if stem and stems:
        raise InsertError("give either --stem or --stems, not both")
    text = stems or stem
    if not text:
        raise InsertError("name the stem to insert with --stem NAME (or several with --stems a,b)")
    names = [part.strip() for part in text.split(",") if part.strip()]
    if len(set(names)) != len(names):
        raise InsertError(f"--stems {text}: a stem is named twice")
    return names


def read_song(
    song_path: Path,
    model_stems: Sequence[str],
    stems: Sequence[str],
    *,
    voice_map: str | None = None,
    steps_per_quarter: int = 4,
    reporter: Reporter | None = None,
) -> VoiceSong:
    """Read ``song_path`` onto the model's voices and check that it gives context for ``stems``
    (no model needed: the command line reads the piece before it loads one). What the reading
    decided (tracks matched by family or register, chords reduced, tracks dropped) is reported
    once the piece is known to be usable."""
    from stemforge.midi import MidiError, check_context, parse_voice_map, read_voice_song

    unknown = [s for s in stems if s not in model_stems]
    if unknown:
        raise InsertError(f"--stem {unknown[0]}: the model's stems are {', '.join(model_stems)}")
    try:
        mapping = None if voice_map is None else parse_voice_map(voice_map)
        song = read_voice_song(
            song_path,
            model_stems,
            targets=list(stems),
            voice_map=mapping,
            steps_per_quarter=steps_per_quarter,
        )
        check_context(song, model_stems, [list(model_stems).index(s) for s in stems])
    except MidiError as err:
        raise InsertError(str(err)) from err
    if reporter is not None:
        for line in song.notes:
            reporter.note(f"note: {Path(song_path).name}: {line}")
    return song


def insert_midi_stems(
    model: VoiceInsertionPipeline,
    song_path: Path,
    stems: Sequence[str],
    out: Path,
    *,
    instruction: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    temperature: float = 1.0,
    order: Literal["random", "confidence"] = "confidence",
    no_parallels: bool = True,
    preview: bool = True,
    preview_rate: int = 22050,
    png: bool = True,
    reporter: Reporter | None = None,
    voice_map: str | None = None,
    song: VoiceSong | None = None,
) -> list[Path]:
    """Insert ``stems`` into ``song_path``; write ``out`` (.mid), ``out``.wav and ``out``.png.

    ``order="confidence"`` (default) reveals the most probable draws first (MaskGIT); ``"random"``
    with one token per call (``steps=None``) samples the model's joint exactly. ``no_parallels``
    (default) forbids parallel fifths and octaves against the known voices while decoding.
    ``voice_map`` (``"soprano=Flute,bass=#3"``) says which track plays which voice; without it the
    tracks are matched by name, General MIDI family or register, and the command says how.
    ``song``: the piece already read by :func:`read_song` (then ``voice_map`` is not used).
    """
    import torch

    from stemforge.midi import REST

    reporter = reporter or Reporter(enabled=False)
    out = Path(out)
    if out.suffix.lower() not in (".mid", ".midi"):
        raise InsertError(f"--out {out}: give a MIDI file name ending in .mid")
    if out.exists() and out.is_dir():
        raise InsertError(f"--out {out}: is a folder; give a file name such as out/song_bass.mid")
    model.check_options(steps, temperature, order)
    model.stem_indices(stems)
    if preview:
        from stemforge.data import renderer_problem

        problem = renderer_problem()
        if problem is not None:  # found before the sampling, not after it
            reporter.note(
                f"warning: no preview {out.with_suffix('.wav').name}: {problem}; the MIDI is written"
            )
            preview = False
    if song is None:
        song = read_song(
            song_path,
            model.stems,
            stems,
            voice_map=voice_map,
            steps_per_quarter=model.steps_per_quarter,
            reporter=reporter,
        )
    if instruction and not model.text_dim:
        reporter.note(
            f"note: the MIDI model {model.label} has no text conditioning; the instruction is not used"
        )
    started = {"windows": False}

    def on_window(done: int, total: int) -> None:
        if not started["windows"]:
            started["windows"] = True
            reporter.start_chunks(total, "windows")
        reporter.chunks_done(1)

    try:
        result = model.insert(
            song,
            stems,
            instruction=instruction,
            seed=seed,
            steps=steps,
            temperature=temperature,
            order=order,
            no_parallels=no_parallels,
            progress=reporter.steps,
            on_window=on_window,
        )
    except PipelineError as err:
        raise InsertError(str(err)) from err
    midi, tokens, targets = result.midi, result.tokens, list(result.targets)
    from stemforge.midi import write_midi

    # The main output first, on its own: an optional output that fails later never costs it.
    with StagedOutputs(out, [song_path]) as staged:
        staged.write(out, lambda p: write_midi(midi, p))
        written = staged.commit()

    def optional(path: Path, write: Callable[[StagedOutputs], object]) -> None:
        try:
            with StagedOutputs(path, [song_path]) as staged:
                write(staged)
                written.extend(staged.commit())
        except Exception as err:  # an optional output: warn, keep the main one, exit 0
            reporter.note(f"warning: {path.name} not written ({err}); {out.name} is written")

    if preview:
        from stemforge.insert.preview import render_preview

        wav = out.with_suffix(".wav")
        optional(
            wav, lambda staged: staged.write_audio(wav, render_preview(midi, preview_rate), preview_rate)
        )
    if png:
        from stemforge.insert.pianoroll_png import save_pianoroll_png

        shown = torch.where(
            torch.tensor(result.present)[:, None]
            | torch.isin(torch.arange(len(model.stems)), torch.tensor(targets))[:, None],
            tokens,
            torch.full_like(tokens, REST),
        )
        title = f"{song_path.name}: inserted {', '.join(model.stems[s] for s in targets)} ({model.label})"
        image = out.with_suffix(".png")
        optional(
            image,
            lambda staged: staged.write(
                image, lambda p: save_pianoroll_png(p, shown, model.stems, targets, title=title)
            ),
        )
    return written

"""The ``midi`` command end to end: read, insert, write the MIDI, its rendered preview and a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from stemforge.insert.errors import InsertError
from stemforge.insert.midi_insert import (
    MidiModel,
    check_context,
    insert_voices,
    instruction_cond,
    read_song,
    song_with_voices,
)
from stemforge.insert.outputs import StagedOutputs
from stemforge.insert.progress import Reporter


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


def insert_midi_stems(
    model: MidiModel,
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
) -> list[Path]:
    """Insert ``stems`` into ``song_path``; write ``out`` (.mid), ``out``.wav and ``out``.png.

    ``order="confidence"`` (default) reveals the most probable draws first (MaskGIT); ``"random"``
    with one token per call (``steps=None``) samples the model's joint exactly. ``no_parallels``
    (default) forbids parallel fifths and octaves against the known voices while decoding.
    ``voice_map`` (``"soprano=Flute,bass=#3"``) says which track plays which voice; without it the
    tracks are matched by name, General MIDI family or register, and the command says how.
    """
    import torch

    reporter = reporter or Reporter(enabled=False)

    from stemforge.midi import JSB_PROGRAMS

    out = Path(out)
    if out.suffix.lower() not in (".mid", ".midi"):
        raise InsertError(f"--out {out}: give a MIDI file name ending in .mid")
    if out.exists() and out.is_dir():
        raise InsertError(f"--out {out}: is a folder; give a file name such as out/song_bass.mid")
    if steps is not None and steps < 1:
        raise InsertError(f"--steps {steps}: give at least 1 (or leave it out: one token per model call)")
    if temperature <= 0:
        raise InsertError(f"--temperature {temperature}: must be > 0")
    targets = model.check_stems(stems)
    mapping = None
    if voice_map is not None:
        from stemforge.midi import MidiError, parse_voice_map

        try:
            mapping = parse_voice_map(voice_map)
        except MidiError as err:
            raise InsertError(str(err)) from err
    song = read_song(song_path, model.stems, targets=list(stems), voice_map=mapping)
    for line in song.notes:
        reporter.note(f"note: {song_path.name}: {line}")
    check_context(song_path, song, model.stems, targets)
    cond = None
    if instruction and model.text_dim:
        cond = instruction_cond(model, instruction, 1)
    elif instruction:
        reporter.note(
            f"note: the MIDI model {model.label} has no text conditioning; the instruction is not used"
        )
    given = torch.tensor([[song.present[s] and s not in targets for s in range(len(model.stems))]])
    windows = {"total": 0}

    def on_window(done: int, total: int) -> None:
        if windows["total"] == 0:
            windows["total"] = total
            reporter.start_chunks(total, "windows")
        reporter.chunks_done(1)

    tokens = insert_voices(
        model,
        song.tokens[None],
        given,
        seed=seed,
        steps_per_window=steps,
        temperature=temperature,
        order=order,
        cond=cond,
        no_parallels=no_parallels,
        progress=reporter.steps,
        on_window=on_window,
    )[0]
    midi = song_with_voices(song, model.stems, tokens, targets, dict(JSB_PROGRAMS))
    with StagedOutputs(out, [song_path]) as staged:
        from stemforge.midi import write_midi

        staged.write(out, lambda p: write_midi(midi, p))
        if preview:
            from stemforge.insert.preview import render_preview

            staged.write_audio(out.with_suffix(".wav"), render_preview(midi, preview_rate), preview_rate)
        if png:
            from stemforge.insert.pianoroll_png import save_pianoroll_png

            shown = torch.where(
                torch.tensor(song.present)[:, None]
                | torch.isin(torch.arange(len(model.stems)), torch.tensor(targets))[:, None],
                tokens,
                torch.full_like(tokens, 128),
            )
            title = f"{song_path.name}: inserted {', '.join(model.stems[s] for s in targets)} ({model.label})"
            staged.write(
                out.with_suffix(".png"),
                lambda p: save_pianoroll_png(p, shown, model.stems, targets, title=title),
            )
        return staged.commit()

"""``midi``: insert (or regenerate) stems of a multi-track MIDI file with the masked discrete
diffusion model of stemforge-train (absorbing-state diffusion over voice tokens, Austin et al. 2021
section 3.2; the orderless model of Uria et al. 2014 / Coconet, Huang et al. 2017).

The piece is read on the 16th-note grid that follows its tempo map (``stemforge.midi.midi_to_roll``),
each of the model's stems becomes a monophonic voice (its top note per step), and the missing voices
are sampled window by window: windows of the model's training length overlap by half, and in each
window the given voices and everything sampled in earlier windows are visible, so every new step
is drawn conditioned on the whole past (ancestral sampling by unmasking, one variable at a time by
default: exact sampling from the model's conditionals in a random order).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from stemforge.insert.errors import InsertError

if TYPE_CHECKING:
    pass

#: Steps per quarter note of the symbolic models (16th notes).
STEPS_PER_QUARTER = 4


@dataclass
class MidiModel:
    """An exported MIDI insertion model: ``model(x, visible, cond) -> logits`` (B, S, T, K)."""

    path: Path
    model: torch.nn.Module
    stems: tuple[str, ...]
    window: int
    multiple: int
    label: str
    config: dict[str, Any]
    text_dim: int = 0
    """Width of the instruction input (0: the model takes no instruction)."""

    def check_stems(self, stems: Sequence[str]) -> list[int]:
        out = []
        for stem in stems:
            if stem not in self.stems:
                raise InsertError(
                    f"--stem {stem}: the MIDI model {self.label} was trained with the stems "
                    f"{', '.join(self.stems)}; choose among them or give another --checkpoint"
                )
            out.append(self.stems.index(stem))
        return out


def load_midi_model(path: Path) -> MidiModel:
    """Load an exported MIDI insertion model (``stemforge-train export`` of a ``task: midi`` run)."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from stemforge.pipelines.voice_model import VoiceInsertionModel

    path = Path(path)
    if not path.is_dir():
        raise InsertError(
            f"--checkpoint {path}: no such folder; give a folder written by `stemforge-train export`"
        )
    if (path / "pipeline.json").is_file():
        raise InsertError(
            f"--checkpoint {path}: holds an audio pipeline, not a MIDI insertion model (task 'midi'); "
            "the audio commands take audio checkpoints"
        )
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InsertError(
            f"--checkpoint {path}: config.json is missing or unreadable ({err}); re-export the model"
        ) from err
    if not isinstance(config, dict) or config.get("task") != "midi":
        task = config.get("task") if isinstance(config, dict) else None
        raise InsertError(
            f"--checkpoint {path}: holds a {task!r} model, not a MIDI insertion model (task 'midi'); "
            "the audio commands take audio checkpoints"
        )
    # The network is rebuilt from its JSON config through a known class (never a class path read
    # from the file); float16-stored weights load into its float32 parameters.
    try:
        model = VoiceInsertionModel.from_config(config["model_config"])
        model.load_state_dict(load_file(path / "model.safetensors"), strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError, SafetensorError, FileNotFoundError) as err:
        raise InsertError(
            f"--checkpoint {path}: the model does not load ({type(err).__name__}: {err})"
        ) from err
    unet_config = model.unet.config
    return MidiModel(
        path=path,
        model=model.eval().requires_grad_(False),
        stems=tuple(config["stem_names"]),
        window=int(config.get("crop_length", 32)),
        multiple=int(unet_config.downsample_factor),
        label=str(config.get("label", config.get("name", path.name))),
        config=config,
        text_dim=int(unet_config.text_dim),
    )


@functools.cache
def _text_encoder() -> Any:
    from stemforge.conditioning import TextEncoder

    return TextEncoder()


def instruction_cond(model: MidiModel, instruction: str, batch: int) -> dict[str, Tensor]:
    """The model's condition for a text instruction: the MiniLM pooled sentence vector, as in
    training (``stemforge.pipelines.voice_model.text_cond``), repeated over ``batch`` rows."""
    from stemforge.pipelines.voice_model import text_cond

    if not model.text_dim:
        raise InsertError(f"the MIDI model {model.label} has no text conditioning; leave out --instruction")
    try:
        pooled = _text_encoder()([instruction]).pooled
    except ImportError as err:
        raise InsertError(f"--instruction needs the text encoder: {err}") from err
    device = next(model.model.parameters()).device
    return text_cond(pooled.expand(batch, -1).to(device))


@dataclass(frozen=True)
class MidiSong:
    """A MIDI file read for insertion: its voices on the model's stems and the grid's times."""

    midi: Any
    tokens: Tensor
    """(S, T) voice tokens in the model's stem order (REST where a stem is absent)."""
    present: tuple[bool, ...]
    """Per model stem: the file has a track for it."""
    times: Tensor
    """(T + 1,) step boundaries in seconds."""
    programs: dict[str, int]
    track_of: dict[str, int]
    notes: tuple[str, ...] = ()
    """What the reading did that a user should know: tracks matched by family or register,
    polyphonic tracks reduced to one voice, tracks dropped."""


def read_song(
    path: Path,
    stems: Sequence[str],
    *,
    targets: Sequence[str] = (),
    voice_map: dict[str, str] | None = None,
) -> MidiSong:
    """Read ``path`` and match its tracks to ``stems`` (:func:`stemforge.midi.map_tracks_to_voices`:
    ``voice_map``, then track names, General MIDI families and registers; the ``targets`` about to
    be generated are matched only through ``voice_map`` or their name). Chords of a matched track
    are reduced to one voice (the bottom note for a bass, the top note otherwise); ``notes`` says
    what was matched, reduced and dropped."""
    from stemforge.midi import MidiError, load_midi, map_tracks_to_voices, midi_to_roll, roll_to_voices

    path = Path(path)
    if path.is_dir():
        raise InsertError(f"MIDI {path}: is a folder; give a .mid file")
    try:
        midi = load_midi(path)
        roll = midi_to_roll(midi, steps_per_quarter=STEPS_PER_QUARTER)
        named = {inst.name.strip().lower() for inst in midi.instruments}
        skip = [t for t in targets if t.lower() not in named]
        mapping = map_tracks_to_voices(midi, stems, explicit=voice_map, skip=skip, source=f"MIDI {path}")
    except MidiError as err:
        message = str(err)
        raise InsertError(message if message.startswith("MIDI") else f"MIDI {message}") from err
    track_of = dict(mapping.tracks)
    notes: list[str] = []
    automatic = any(how != "track name" for how in mapping.how.values())
    if automatic or mapping.dropped:
        notes += mapping.describe(midi)
    t = roll.num_steps
    tokens = torch.full((len(stems), t), 128, dtype=torch.long)
    for s, stem in enumerate(stems):
        if stem in track_of:
            i = track_of[stem]
            chords = float((roll.sustain[i].sum(-1) > 1).float().mean())
            rule = "lowest" if stem.lower() == "bass" else "highest"
            tokens[s] = roll_to_voices(roll.sustain[i : i + 1], polyphony=rule)[0]
            if chords > 0:
                notes.append(
                    f"{stem}: track #{i} plays chords on {100 * chords:.0f} % of its steps; reduced to its "
                    f"{rule} note at each step"
                )
    programs = {stem: int(midi.instruments[i].program) for stem, i in track_of.items()}
    return MidiSong(
        midi,
        tokens,
        tuple(s in track_of for s in stems),
        roll.times.float(),
        programs,
        track_of,
        tuple(notes),
    )


def check_context(song_path: Path, song: MidiSong, stems: Sequence[str], targets: Sequence[int]) -> None:
    """Insertion needs at least one given voice besides the ones to generate."""
    context = [stems[s] for s in range(len(stems)) if song.present[s] and s not in targets]
    if not context:
        others = [stems[s] for s in range(len(stems)) if s not in targets]
        raise InsertError(
            f"MIDI {song_path}: no track can play {', '.join(others) or '(none)'} (none is named so, none is of "
            f"that General MIDI family, no pitched track is left for a register), so there is no context to insert "
            f"{', '.join(stems[s] for s in targets)} into; say which track plays which voice with "
            f"--map VOICE=TRACK (a track name or #index), or give a file with those parts"
        )


@torch.no_grad()
def insert_voices(
    model: MidiModel,
    tokens: Tensor,
    given: Tensor,
    *,
    seed: int = 0,
    steps_per_window: int | None = None,
    temperature: float = 1.0,
    order: Literal["random", "confidence"] = "random",
    cond: dict[str, Tensor] | None = None,
    no_parallels: bool = False,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Fill the voices where ``given`` (B, S) is False in ``tokens`` (B, S, T), window by window.

    ``steps_per_window=None`` reveals one token per model call (exact ancestral sampling with
    ``order="random"``; ``"confidence"`` reveals the most probable draw first, MaskGIT-style).
    ``cond`` (e.g. :func:`instruction_cond`) is passed to every model call. ``no_parallels``
    forbids pitches that would move in parallel fifths or octaves with a known voice
    (:mod:`stemforge.insert.midi_constraints`).
    """
    from stemforge.samplers import unmask_sample

    b, s, t = tokens.shape
    window = max(model.multiple, (model.window // model.multiple) * model.multiple)
    padded = -(-t // model.multiple) * model.multiple
    x = torch.full((b, s, max(padded, window)), 128, dtype=torch.long)
    x[..., :t] = tokens
    length = x.shape[-1]
    visible = given.bool()[:, :, None].expand(b, s, length).clone()
    visible[..., t:] = True  # padding: rests, known
    hop = max(model.multiple, window // 2)
    starts = list(range(0, max(1, length - window + 1), hop))
    if starts[-1] + window < length:
        starts.append(length - window)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.model.parameters()).device
    network: Any = model.model
    if no_parallels:
        from stemforge.insert.midi_constraints import NoParallelsModel

        network = NoParallelsModel(model.model)
    for k, start in enumerate(starts):
        sl = slice(start, start + window)
        filled = unmask_sample(
            network,
            x[..., sl].to(device),
            visible[..., sl].to(device),
            kind="categorical",
            num_steps=steps_per_window,
            temperature=temperature,
            order=order,
            cond=cond,
            generator=gen,
            progress=progress,
        ).cpu()
        x[..., sl] = filled
        visible[..., sl] = True
        if on_window is not None:
            on_window(k + 1, len(starts))
    return x[..., :t]


def song_with_voices(
    song: MidiSong,
    stems: Sequence[str],
    tokens: Tensor,
    targets: Sequence[int],
    default_programs: dict[str, int],
) -> Any:
    """A copy of the song's MIDI with the target stems' tracks replaced by ``tokens`` (S, T)."""
    import pretty_midi

    midi = copy.deepcopy(song.midi)
    replaced = {song.track_of[stems[s]] for s in targets if stems[s] in song.track_of}
    midi.instruments = [inst for i, inst in enumerate(midi.instruments) if i not in replaced]
    times = song.times.tolist()
    for s in targets:
        stem = stems[s]
        program = song.programs.get(stem, default_programs.get(stem, 0))
        inst = pretty_midi.Instrument(program=program, name=stem)
        row = tokens[s].tolist()
        begin = 0
        for step in range(1, len(row) + 1):
            if step == len(row) or row[step] != row[begin]:
                if row[begin] != 128:
                    inst.notes.append(pretty_midi.Note(90, int(row[begin]), times[begin], times[step]))
                begin = step
        midi.instruments.append(inst)
    return midi

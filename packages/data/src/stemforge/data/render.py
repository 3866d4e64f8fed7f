"""Slakh-style rendering of multi-track MIDI with a General MIDI SoundFont.

Following Slakh2100 (Manilow et al. 2019): every MIDI track is rendered on its own to a mono stem,
each stem is normalised to an integrated loudness of -13 LUFS (ITU-R BS.1770-4, see
``loudness.py``), then one overall gain brings the peak of the mixture (the sum of the stems) to
``peak_dbfs`` (-1 dBFS), so that the mix never clips. The program of each track is either kept or
drawn from a seed within its General MIDI family (``program_policy="family"``), which plays the role
of Slakh's random choice of patches per instrument class.

Two synthesisers ("backends") play the SoundFont; ``RenderConfig.backend`` picks one:

- ``"tinysoundfont"``: TinySoundFont through the ``tinysoundfont`` wheel, used without its
  live-playback dependency (pyaudio), so installed by hand with ``--no-deps``. Notes, pitch bends and
  control changes are scheduled sample-exactly and rendered block by block into a float32 buffer at
  the output rate. The shipped corpora and models were rendered with it.
- ``"midirenderer"``: the ``midirenderer`` wheel, a declared dependency (``midirenderer_synth.py``):
  each track becomes a one-track MIDI file, rendered at 48 kHz and resampled to the output rate.
- ``"auto"`` (default): tinysoundfont when it can be imported, else midirenderer.

The two synthesisers do not give the same samples; the backend used is stored with the track.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pretty_midi

from stemforge.data.loudness import integrated_loudness
from stemforge.midi import family_programs, instrument_class

ProgramPolicy = Literal["keep", "family"]
RenderBackend = Literal["auto", "tinysoundfont", "midirenderer"]
#: The synthesisers, in the order ``backend="auto"`` tries them.
BACKENDS: tuple[Literal["tinysoundfont", "midirenderer"], ...] = ("tinysoundfont", "midirenderer")

#: Where Debian's fluid-soundfont-gm puts FluidR3_GM (used for ``soundfont="fluidr3_gm"``).
FLUIDR3_PATHS: tuple[str, ...] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/local/share/soundfonts/FluidR3_GM.sf2",
)
DRUM_CHANNEL = 9
DRUM_BANK = 128


class RenderError(ValueError):
    """A SoundFont or MIDI input that the renderer cannot use; the message names it and the fix."""


def default_soundfont() -> Path:
    """TimGM6mb.sf2 (GPL-2, 6 MB), shipped inside the pretty_midi wheel."""
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def resolve_soundfont(soundfont: str | os.PathLike[str] | None) -> Path:
    """``None``/"timgm6mb" -> pretty_midi's TimGM6mb; "fluidr3_gm" -> an installed FluidR3_GM; else a path."""
    if soundfont is None or str(soundfont).lower() == "timgm6mb":
        path = default_soundfont()
        if not path.is_file():
            raise RenderError(f"{path}: pretty_midi's TimGM6mb.sf2 is missing; reinstall pretty_midi")
        return path
    if str(soundfont).lower() == "fluidr3_gm":
        for candidate in FLUIDR3_PATHS:
            if Path(candidate).is_file():
                return Path(candidate)
        raise RenderError(
            f"FluidR3_GM is not installed (looked in {', '.join(FLUIDR3_PATHS)}); "
            "install the fluid-soundfont-gm package or pass the .sf2 path"
        )
    path = Path(soundfont)
    if not path.is_file():
        raise RenderError(f"{path}: no such SoundFont file; give the path of a .sf2 file")
    with path.open("rb") as handle:
        head = handle.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise RenderError(f"{path}: not a SoundFont 2 file (no RIFF/sfbk header); give a .sf2 file")
    return path


RENDERER_MISSING = (
    "tinysoundfont is not installed; install it without its live-playback dependency "
    "(pyaudio): pip install --no-deps tinysoundfont==0.3.7"
)
MIDIRENDERER_MISSING = (
    "midirenderer is not installed (a dependency of stemforge-data); reinstall it: "
    "pip install 'midirenderer>=0.1.3,<0.2'"
)
NO_RENDERER = (
    "no SoundFont renderer is installed: stemforge-data renders with midirenderer, one of its "
    "dependencies (reinstall it: pip install 'midirenderer>=0.1.3,<0.2'), or with tinysoundfont "
    "(pip install --no-deps tinysoundfont==0.3.7)"
)


def _backend_problem(name: str) -> str | None:
    try:
        if name == "tinysoundfont":
            from tinysoundfont import _tinysoundfont  # noqa: F401
        else:
            import midirenderer  # noqa: F401
    except ImportError:
        return RENDERER_MISSING if name == "tinysoundfont" else MIDIRENDERER_MISSING
    return None


def available_backends() -> tuple[str, ...]:
    """The synthesisers that can be imported here, in the order ``backend="auto"`` tries them."""
    return tuple(name for name in BACKENDS if _backend_problem(name) is None)


def _check_backend(backend: str) -> None:
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"backend={backend!r}; use 'auto', 'tinysoundfont' or 'midirenderer'")


def resolve_backend(backend: RenderBackend = "auto") -> Literal["tinysoundfont", "midirenderer"]:
    """The synthesiser that ``backend`` renders with here; :class:`RenderError` when it is missing."""
    _check_backend(backend)
    problem = renderer_problem(backend)
    if problem is not None:
        raise RenderError(problem)
    if backend == "auto":
        return available_backends()[0]  # type: ignore[return-value]
    return backend


def backend_version(backend: str) -> str:
    """The installed version of a backend's wheel ("unknown" when its metadata is missing)."""
    try:
        return version(backend)
    except PackageNotFoundError:
        return "unknown"


def renderer_problem(backend: RenderBackend = "auto") -> str | None:
    """Why SoundFont rendering with ``backend`` cannot run here (None when it can): a command that
    renders an optional preview asks this before its main work instead of failing after it.
    With ``"auto"`` there is a problem only when no backend can be imported."""
    _check_backend(backend)
    if backend != "auto":
        return _backend_problem(backend)
    return None if available_backends() else NO_RENDERER


class Synth(Protocol):
    """What the renderer needs of a loaded SoundFont, whatever plays it."""

    backend: str
    path: Path
    sample_rate: int

    def preset_name(self, bank: int, program: int) -> str: ...

    def available(self, is_drum: bool) -> list[int]: ...

    def render(self, instrument: pretty_midi.Instrument, program: int, num_samples: int) -> np.ndarray: ...


class SoundFontSynth:
    """One loaded SoundFont rendering mono float32 at ``sample_rate`` with tinysoundfont; reset
    between tracks."""

    backend = "tinysoundfont"

    def __init__(self, path: Path, sample_rate: int, max_voices: int = 256) -> None:
        try:
            from tinysoundfont import _tinysoundfont as tsf
        except ImportError as err:
            raise RenderError(RENDERER_MISSING) from err

        self._tsf = tsf
        self._data = path.read_bytes()
        self.path = path
        self.sample_rate = int(sample_rate)
        self.max_voices = max_voices
        self._sf = self._fresh()

    def _fresh(self):
        # A freshly parsed SoundFont per track (~7 ms for TimGM6mb): TinySoundFont's reset() leaves
        # some voice state behind, and a render must not depend on what was rendered before.
        try:
            sf = self._tsf.SoundFont(self._data)
        except Exception as err:
            raise RenderError(f"{self.path}: tinysoundfont cannot load this SoundFont ({err})") from err
        sf.set_output(self._tsf.OutputMode.Mono, self.sample_rate, 0.0)
        sf.set_max_voices(self.max_voices)
        return sf

    def has_preset(self, bank: int, program: int) -> bool:
        return self._sf.get_preset_index(bank, program) >= 0

    def preset_name(self, bank: int, program: int) -> str:
        return str(self._sf.get_preset_name(bank, program))

    def available(self, is_drum: bool) -> list[int]:
        bank = DRUM_BANK if is_drum else 0
        return [p for p in range(128) if self.has_preset(bank, p)]

    def render(self, instrument: pretty_midi.Instrument, program: int, num_samples: int) -> np.ndarray:
        """Render one MIDI track with ``program`` into a (num_samples,) float32 array."""
        sf, sr = self._fresh(), self.sample_rate
        chan = DRUM_CHANNEL if instrument.is_drum else 0
        if instrument.is_drum:
            sf.channel_set_bank(chan, DRUM_BANK)
        sf.channel_set_preset_number(chan, program, instrument.is_drum)
        # (sample, order, kind, a, b): controls before note-offs before note-ons at one instant,
        # so a repeated pitch is released and struck again.
        events: list[tuple[int, int, int, int, int]] = []
        for cc in instrument.control_changes:
            events.append((round(cc.time * sr), 0, 0, cc.number, cc.value))
        for bend in instrument.pitch_bends:
            events.append((round(bend.time * sr), 0, 1, bend.pitch + 8192, 0))
        for note in instrument.notes:
            events.append((round(note.start * sr), 2, 2, note.pitch, note.velocity))
            events.append((max(round(note.end * sr), round(note.start * sr) + 1), 1, 3, note.pitch, 0))
        events.sort()
        out = np.zeros(num_samples, dtype=np.float32)
        view = out.view(np.uint8).data  # tinysoundfont fills a byte buffer
        pos = 0
        for sample, _, kind, a, b in events:
            sample = min(sample, num_samples)
            if sample > pos:
                sf.render(view[4 * pos : 4 * sample])
                pos = sample
            if kind == 0:
                sf.channel_midi_control(chan, a, b)
            elif kind == 1:
                sf.channel_set_pitch_wheel(chan, a)
            elif kind == 2:
                sf.channel_note_on(chan, a, b / 127.0)
            else:
                sf.channel_note_off(chan, a)
        if pos < num_samples:
            sf.render(view[4 * pos :])
        return out


def load_synth(path: Path, sample_rate: int, backend: RenderBackend = "auto") -> Synth:
    """A cached synthesiser of ``path`` at ``sample_rate`` on ``backend`` (parsing a SoundFont costs
    more than rendering a chorale)."""
    return _load_synth(path, sample_rate, resolve_backend(backend))


@functools.lru_cache(maxsize=4)
def _load_synth(path: Path, sample_rate: int, backend: str) -> Synth:
    if backend == "tinysoundfont":
        return SoundFontSynth(path, sample_rate)
    from stemforge.data.midirenderer_synth import MidiRendererSynth

    return MidiRendererSynth(path, sample_rate)


@dataclass(frozen=True)
class RenderConfig:
    """How MIDI becomes Slakh-style stems. ``soundfont``: None (TimGM6mb), "fluidr3_gm" or a path;
    ``backend``: the synthesiser ("auto": tinysoundfont when installed, else midirenderer)."""

    sample_rate: int = 16000
    soundfont: str | None = None
    program_policy: ProgramPolicy = "family"
    target_lufs: float = -13.0
    peak_dbfs: float = -1.0
    tail_seconds: float = 1.0
    max_seconds: float = 3600.0
    backend: RenderBackend = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or not 4000 <= self.sample_rate <= 192000:
            raise ValueError(
                f"RenderConfig: sample_rate={self.sample_rate!r}; use an integer in 4000-192000 Hz"
            )
        if self.program_policy not in ("keep", "family"):
            raise ValueError(f"RenderConfig: program_policy={self.program_policy!r}; use 'keep' or 'family'")
        if self.peak_dbfs > 0:
            raise ValueError(f"RenderConfig: peak_dbfs={self.peak_dbfs} would clip; use a value <= 0")
        if self.tail_seconds < 0:
            raise ValueError(f"RenderConfig: tail_seconds={self.tail_seconds}; use a value >= 0")
        if self.backend not in ("auto", *BACKENDS):
            raise ValueError(
                f"RenderConfig: backend={self.backend!r}; use 'auto', 'tinysoundfont' or 'midirenderer'"
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "sample_rate": self.sample_rate,
            "soundfont": self.soundfont,
            "program_policy": self.program_policy,
            "target_lufs": self.target_lufs,
            "peak_dbfs": self.peak_dbfs,
            "tail_seconds": self.tail_seconds,
            "max_seconds": self.max_seconds,
            "backend": self.backend,
        }


@dataclass
class RenderedStem:
    """One rendered MIDI track (a Slakh "stem" S00, S01, ...)."""

    key: str
    stem_name: str
    program: int
    is_drum: bool
    inst_class: str
    program_name: str
    preset_name: str
    audio: np.ndarray | None  # None when the track has no notes (Slakh: audio_rendered false)
    integrated_loudness: float
    instrument: pretty_midi.Instrument


@dataclass
class RenderedTrack:
    sample_rate: int
    stems: list[RenderedStem]
    overall_gain: float
    soundfont: Path
    config: RenderConfig
    seed: int
    backend: str = "tinysoundfont"  # the synthesiser that rendered it ("auto" resolved)
    backend_version: str = "unknown"

    @property
    def num_samples(self) -> int:
        return next((s.audio.shape[0] for s in self.stems if s.audio is not None), 0)

    def mix(self) -> np.ndarray:
        """The mixture: the plain sum of the rendered stems."""
        mix = np.zeros(self.num_samples, dtype=np.float64)
        for stem in self.stems:
            if stem.audio is not None:
                mix += stem.audio
        return mix.astype(np.float32)


def _choose_program(
    synth: Synth, inst: pretty_midi.Instrument, policy: ProgramPolicy, rng: np.random.Generator
) -> int:
    """The preset of a track: its own program ("keep") or a draw within its GM family ("family").

    Drum tracks draw among the SoundFont's kits. A program the SoundFont lacks falls back to the
    presets of its family, then to any preset.
    """
    available = synth.available(inst.is_drum)
    if not available:
        kind = "drum kits" if inst.is_drum else "melodic presets"
        raise RenderError(f"{synth.path}: the SoundFont has no {kind}; give a General MIDI SoundFont")
    family = available if inst.is_drum else [p for p in family_programs(inst.program) if p in available]
    if policy == "keep" and inst.program in available:
        return int(inst.program)
    candidates = family or available
    return int(candidates[int(rng.integers(len(candidates)))])


def render_midi(
    midi: pretty_midi.PrettyMIDI,
    *,
    config: RenderConfig | None = None,
    seed: int = 0,
    stem_names: Sequence[str] | None = None,
) -> RenderedTrack:
    """Render every track of ``midi`` to a loudness-normalised mono stem (Slakh2100's recipe).

    ``stem_names`` (one per track) are stored with each stem; by default the track's name, or its
    ``inst_class`` in lower case when the track has no name.
    """
    config = config or RenderConfig()
    if not midi.instruments:
        raise RenderError("render_midi: the MIDI has no tracks; give a MIDI file with notes")
    if stem_names is not None and len(stem_names) != len(midi.instruments):
        raise RenderError(f"render_midi: {len(stem_names)} stem names for {len(midi.instruments)} tracks")
    sf_path = resolve_soundfont(config.soundfont)
    synth = load_synth(sf_path, config.sample_rate, config.backend)
    sr = config.sample_rate
    end = max((n.end for inst in midi.instruments for n in inst.notes), default=0.0)
    if end <= 0:
        raise RenderError("render_midi: the MIDI has no notes; nothing to render")
    if end + config.tail_seconds > config.max_seconds:
        raise RenderError(
            f"render_midi: the piece lasts {end:.0f} s, more than max_seconds={config.max_seconds:.0f}; "
            "split it or raise RenderConfig.max_seconds"
        )
    num_samples = int(np.ceil((end + config.tail_seconds) * sr))
    stems: list[RenderedStem] = []
    for index, inst in enumerate(midi.instruments):
        rng = np.random.default_rng([seed, index])
        program = _choose_program(synth, inst, config.program_policy, rng)
        cls = instrument_class(inst.program, inst.is_drum)
        name = stem_names[index] if stem_names is not None else (inst.name.strip() or cls.lower())
        bank = DRUM_BANK if inst.is_drum else 0
        audio: np.ndarray | None = None
        loudness = float("-inf")
        if inst.notes:
            audio = synth.render(inst, program, num_samples)
            loudness = integrated_loudness(audio, sr)
            if np.isfinite(loudness):
                audio = audio * np.float32(10 ** ((config.target_lufs - loudness) / 20))
        stems.append(
            RenderedStem(
                key=f"S{index:02d}",
                stem_name=name,
                program=program,
                is_drum=inst.is_drum,
                inst_class=cls,
                program_name="Drums" if inst.is_drum else pretty_midi.program_to_instrument_name(program),
                preset_name=synth.preset_name(bank, program),
                audio=audio,
                integrated_loudness=loudness,
                instrument=inst,
            )
        )
    track = RenderedTrack(
        sr, stems, 1.0, sf_path, config, seed, synth.backend, backend_version(synth.backend)
    )
    peak = float(np.abs(track.mix()).max())
    if peak > 0:
        # Leave a few LSBs of 16-bit headroom so that the quantised mixture stays under the target.
        gain = 10 ** (config.peak_dbfs / 20) * (1 - 2**-10) / peak
        track.overall_gain = gain
        for stem in stems:
            if stem.audio is not None:
                stem.audio = (stem.audio * np.float32(gain)).astype(np.float32)
                # Loudness scales with the gain (the absolute gate at -70 LUFS aside).
                stem.integrated_loudness = config.target_lufs + 20 * float(np.log10(gain))
    return track

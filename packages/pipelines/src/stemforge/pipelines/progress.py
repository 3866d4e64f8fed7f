"""How a pipeline reports progress: an optional object with four methods, not a printed bar.

An application passes its own (stemforge-insert's rich bars satisfy this protocol); the default
reports nothing and sends notes to :mod:`warnings`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Protocol


class Reporter(Protocol):
    def start_chunks(self, total: int, what: str = "chunks") -> None:
        """``total`` chunks of the input are about to be sampled."""

    def chunks_done(self, count: int) -> None:
        """``count`` more chunks are finished."""

    def steps(self, iterable: Iterable[int]) -> Iterator[int]:
        """Wraps a sampler's step iterator (the samplers' ``progress`` argument)."""
        ...

    def note(self, message: str) -> None:
        """Something the user should know (a warning, a choice made for them)."""


class SilentReporter:
    """No bars; notes go to :func:`warnings.warn`."""

    def start_chunks(self, total: int, what: str = "chunks") -> None:
        return None

    def chunks_done(self, count: int) -> None:
        return None

    def steps(self, iterable: Iterable[int]) -> Iterator[int]:
        yield from iterable

    def note(self, message: str) -> None:
        warnings.warn(message, stacklevel=2)

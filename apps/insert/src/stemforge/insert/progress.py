"""Progress over chunks and sampling steps (rich), silent when not asked for."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class Reporter:
    """Two bars on stderr: chunks of the file (with the estimated time left, from the chunks done so
    far), and the steps of the chunk batch being sampled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._chunks: TaskID | None = None
        self._steps: TaskID | None = None

    def __enter__(self) -> Reporter:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            # stderr, like the notes and errors: stdout lists the files written
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
            self._progress = None

    def start_chunks(self, total: int, what: str = "chunks") -> None:
        if self._progress is not None:
            self._chunks = self._progress.add_task(what, total=total)

    def chunks_done(self, count: int) -> None:
        if self._progress is not None and self._chunks is not None:
            self._progress.advance(self._chunks, count)

    def steps(self, iterable: Iterable[int]) -> Iterator[int]:
        """Wraps a sampler's step iterator (the samplers' ``progress`` argument)."""
        items = list(iterable)
        if self._progress is None:
            yield from items
            return
        if self._steps is None:
            self._steps = self._progress.add_task("steps", total=len(items))
        self._progress.reset(self._steps, total=len(items))
        for item in items:
            yield item
            self._progress.advance(self._steps)

    def note(self, message: str) -> None:
        """A notice for the user (on stderr, above the bars when they are shown)."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            print(message, file=sys.stderr)

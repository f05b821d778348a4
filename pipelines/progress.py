"""How a long step tells the user what it is doing.

Library code takes a ``progress`` callable (``progress("message")``) and wraps its long
loops in :func:`track`. The command line passes a :class:`ConsoleProgress`: time-stamped
lines, and a bar over each long loop on a terminal (transient: it disappears once the loop
is done) or one summary line when the output is piped to a file. Called without one, the
steps say nothing (:func:`silent`), so tests and library use stay quiet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
Reporter = Callable[[str], object]


def silent(message: str) -> None:
    """A reporter that says nothing."""


def track(
    progress: Reporter, items: Iterable[T], description: str, total: int | None = None
) -> Iterable[T]:
    """``items``, shown as a bar when ``progress`` can draw one (a :class:`ConsoleProgress`);
    any other reporter (``print``, :func:`silent`) gets the items untouched."""
    tracker = getattr(progress, "track", None)
    if tracker is None:
        return items
    return tracker(items, description, total)


def make_console() -> Console:
    """The command line's console: stderr, never wrapping a line (a piped report keeps one
    line per row, whatever the width), no colour codes unless stderr is a terminal."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


class ConsoleProgress:
    """Time-stamped lines and progress bars on a rich console."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console()

    def __call__(self, message: str) -> None:
        from rich.text import Text

        # Text, not markup: a '[' in a message is printed as it is
        self.console.print(Text.assemble((f"{datetime.now():%H:%M:%S}", "dim"), " ", message))

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        if not self.console.is_terminal:
            yield from self._plain(items, description)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (
            TextColumn("         {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)

    def _plain(self, items: Iterable[T], description: str) -> Iterator[T]:
        """No bar in a log: one line once the loop is done, with its count and time."""
        start, n = time.perf_counter(), 0
        for item in items:
            yield item
            n += 1
        self(f"  {description}: {n:,} done in {time.perf_counter() - start:.1f} s")

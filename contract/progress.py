"""Progress of long work: a rich progress bar on a terminal, plain periodic lines otherwise.

Both halves report progress through the same small object (``advance(n)``), so a library
function takes a ``progress`` argument and never decides how it is shown::

    with Progress("eval", total=len(images)) as bar:
        for batch in ...:
            bar.advance(len(batch))
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "NullProgress"]


class NullProgress:
    """Shows nothing (library default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, n: int = 1, note: str = "") -> None:
        pass


class Progress(NullProgress):
    """``what``: a word for the unit of work (``"image"``); ``total``: how many.

    On a terminal it draws a rich bar on ``stream`` (stderr); otherwise it prints one line
    ``<label>: 120/450 images (27%), 14.2 images/s`` at most every ``every`` seconds and at the end."""

    def __init__(self, label: str, total: int, *, what: str = "image", stream: TextIO | None = None,
                 every: float = 10.0, terminal: bool | None = None):
        self.label, self.total, self.what = label, int(total), what
        self.stream = stream or sys.stderr
        self.every = every
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.done = 0
        self._bar = None

    def __enter__(self):
        self._t0 = self._last = time.perf_counter()
        if self.terminal:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn
            from rich.progress import TimeElapsedColumn, TimeRemainingColumn

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn(f"{self.what}s"), TimeElapsedColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[note]}"), console=Console(file=self.stream),
                                     transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, note="")
        return self

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, note=note)
            return
        now = time.perf_counter()
        if now - self._last >= self.every or self.done >= self.total:
            self._line(now, note)

    def _line(self, now: float, note: str = "") -> None:
        self._last = now
        rate = self.done / max(now - self._t0, 1e-9)
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        extra = f", {note}" if note else ""
        print(f"{self.label}: {self.done}/{self.total} {self.what}s{pct}, {rate:.3g} {self.what}s/s{extra}",
              file=self.stream, flush=True)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        elif self.done and self.done < self.total:
            self._line(time.perf_counter(), "stopped")
        return False

"""How a long call says how far it is: the caller's own callback (a tqdm bar's update, a
trainer's logger) or, with `progress=True`, a bar on the terminal. The engine calls it from the
calling thread as traces finish, never from its workers, so a callback may touch Python state
freely; an exception it raises stops the engine and comes out of the call."""

from __future__ import annotations

import sys
from typing import Callable, TextIO, Union

Callback = Callable[[int, int], object]
Progress = Union[bool, Callback, None]


class TerminalBar:
    """`flowtracer: 640/10000 traces [##........................]` on stderr, redrawn in place and
    ended with a newline when every trace is done."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, unit: str = "traces") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.unit = unit

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        self.stream.write(f"\rflowtracer: {done}/{total} {self.unit} [{'#' * filled}{'.' * (self.width - filled)}]")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def reporter(progress: Progress, unit: str = "traces") -> Callback | None:
    """The callback `progress` stands for: None for no reports; `unit` is what the bar counts."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return TerminalBar(unit=unit)
    if callable(progress):
        return progress
    raise TypeError(f"progress: expected True, False, None or a callable(done, total), not {type(progress).__name__}")

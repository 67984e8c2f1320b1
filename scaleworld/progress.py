"""The one progress bar of long loops (collection, encoding, training, PPO): rich, or nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class progress_bar:
    """``with progress_bar(enabled, "collect Pong", total) as advance: advance(n, note="...")``.

    Disabled, `advance` does nothing (tests, subprocess jobs, --no-progress).
    """

    def __init__(self, enabled: bool, description: str, total: int, *, completed: int = 0):
        self.enabled, self.description, self.total, self.completed = enabled, description, total, completed

    def __enter__(self) -> Callable[..., None]:
        if not self.enabled:
            return lambda n=1, note="": None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), TextColumn("{task.fields[note]}"))
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total, completed=self.completed, note="")
        return lambda n=1, note="": self._bar.update(task, advance=n, note=note)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)

"""The console every command prints its tables on: rich's on a terminal; elsewhere (a pipe, a file,
a SLURM log) plain ASCII tables that never cut a cell short with "…" but fold it onto the next line,
so that every number and name reaches the reader whole."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


class PlainSafeConsole(Console):
    """A rich Console whose tables are ASCII and fold their cells instead of ending them in an ellipsis
    when it is not writing to a terminal (on a terminal a cut cell can be read by widening the window)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not self.is_terminal:
            for table in objects:
                if isinstance(table, Table):
                    table.box = box.ASCII
                    for column in table.columns:
                        column.overflow = "fold"
        super().print(*objects, **kwargs)


def console(width: int | None = None) -> PlainSafeConsole:
    """The console of a command's output (`width`: its columns; default: the terminal's, or 80)."""
    return PlainSafeConsole(width=width)

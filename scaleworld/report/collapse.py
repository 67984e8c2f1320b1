"""Per-game tables that stay readable at 26 games: they show what differs between games.

A table of more than `COLLAPSE_ABOVE` games (scaleworld.report) (joint26 has 26; the smoke study 2) is printed collapsed
unless `scaleworld report --full` asks for every row:

- rows that agree in every cell but the game merge into one, whose game cell names the group ("all 26
  games", or "group 1 (12 games)" with the group's games listed under the table);
- a column that then holds one value in every row leaves the table for a line under it ("every row:
  regime = inconclusive"), or silently when that value is "-" (nothing to say);
- a table left with one row is printed as one line: its title, then "all 26 games: ...".

Nothing is dropped: every game is named, every value is shown once. `--json` and `--csv` always hold
every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scaleworld.report import COLLAPSE_ABOVE

BLANK = ("-", "")
"""Cells that say nothing (not measured, not applicable)."""


@dataclass(frozen=True)
class TableStyle:
    """How the report's tables look: rich's box (ASCII off a terminal) and whether to show every row."""

    box: Any
    full: bool = False


def print_table(console: Any, style: TableStyle, title: str, columns: Sequence[str], rows: list[Sequence[str]],
                *, game: str = "game", merged: bool = False) -> None:
    """One table of `columns`; collapsed (module docstring) when it names more than `COLLAPSE_ABOVE`
    distinct values in its `game` column, or its caller `merged` rows of many games, and `style.full`
    is off."""
    from rich.table import Table

    columns, rows, notes = list(columns), [list(r) for r in rows], []
    if game in columns and not style.full:
        columns, rows, notes = collapse(columns, rows, game=game, merged=merged)
    if game in columns and not style.full and len(rows) == 1 and rows[0][columns.index(game)].startswith("all "):
        # collapsed to one row: a line says it (each cell named by its column)
        cells = [f"{col} = {cell}" for col, cell in zip(columns, rows[0]) if col != game and cell not in BLANK]
        console.print(f"{title}: {rows[0][columns.index(game)]}: {'; '.join(cells) or 'nothing to show'}")
        for note in notes:
            console.print(note)
        return
    table = Table(title=title, box=style.box)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for note in notes:
        console.print(note)


def collapse(columns: list[str], rows: list[list[str]], *, game: str,
             merged: bool = False) -> tuple[list[str], list[list[str]], list[str]]:
    """(columns, rows, notes) as `print_table` shows them; unchanged at `COLLAPSE_ABOVE` games or fewer
    unless the caller already `merged` rows of many games (then only the constant columns go)."""
    g = columns.index(game)
    games = list(dict.fromkeys(row[g] for row in rows))
    if len(games) <= COLLAPSE_ABOVE and not merged:
        return columns, rows, []
    groups: dict[tuple[str, ...], list[str]] = {}  # the row's other cells -> its games, in first-seen order
    for row in rows:
        groups.setdefault(tuple(row[:g] + row[g + 1:]), []).append(row[g])
    notes, out = [], []
    for rest, members in groups.items():
        if len(members) == 1:
            name = members[0]
        elif len(members) == len(games):
            name = f"all {len(games)} games"
        else:
            name = f"group {len(notes) + 1} ({len(members)} games)"
            notes.append(f"{name}: {', '.join(members)}")
        out.append([*rest[:g], name, *rest[g:]])
    if len(out) > 1:  # a column with one value throughout says it once, under the table
        constant = [i for i in range(len(columns)) if i != g and len({row[i] for row in out}) == 1]
        notes = [f"every row: {columns[i]} = {out[0][i]}" for i in constant if out[0][i] not in BLANK] + notes
        keep = [i for i in range(len(columns)) if i not in constant]
        columns, out = [columns[i] for i in keep], [[row[i] for i in keep] for row in out]
    return columns, out, notes

"""PPO's CSV logs: episode returns and per-update statistics, consistent across resumes.

A resumed run restarts from its last checkpoint, so rows written after that checkpoint (by the
run that was interrupted) would be written again. `RunLogs` therefore first drops every row of an
update at or after the resumed update count, then appends. Files:

    episodes.csv  update, frames, env, return, length    (raw return; one row per finished episode)
    updates.csv   update, frames, episodes, seconds, frames_per_s, loss_objective, loss_critic,
                  loss_entropy, entropy, kl_approx, clip_fraction
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

EPISODE_COLUMNS = ("update", "frames", "env", "return", "length")
STAT_COLUMNS = ("loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx", "clip_fraction")
UPDATE_COLUMNS = ("update", "frames", "episodes", "seconds", "frames_per_s", *STAT_COLUMNS)


def _open(path: Path, columns: tuple[str, ...], keep_updates_below: int):
    """Open `path` for appending after keeping only the rows with update < keep_updates_below."""
    rows: list[dict[str, str]] = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["update"]) < keep_updates_below]
    f = open(path, "w", newline="")
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    f.flush()
    return f, writer


class RunLogs:
    """Append-only CSV logs of one PPO run folder (`training/`)."""

    def __init__(self, training: Path, *, keep_updates_below: int):
        self._episodes_file, self._episodes = _open(training / "episodes.csv", EPISODE_COLUMNS, keep_updates_below)
        self._updates_file, self._updates = _open(training / "updates.csv", UPDATE_COLUMNS, keep_updates_below)

    def episode(self, *, update: int, frames: int, env: int, ret: float, length: int) -> None:
        self._episodes.writerow({"update": update, "frames": frames, "env": env, "return": ret, "length": length})

    def update(self, *, update: int, frames: int, stats: dict[str, float], episodes: int, seconds: float,
               frames_per_s: float) -> None:
        """`seconds`: wall time of the update, collection included."""
        row: dict[str, Any] = {"update": update, "frames": frames, "episodes": episodes, "seconds": f"{seconds:.3f}",
                               "frames_per_s": f"{frames_per_s:.1f}"}
        row.update({k: f"{stats[k]:.6g}" for k in STAT_COLUMNS})
        self._updates.writerow(row)
        self._episodes_file.flush()
        self._updates_file.flush()

    def close(self) -> None:
        self._episodes_file.close()
        self._updates_file.close()

"""Format 1 datasets (before TorchRL's conventions), read in format 2's layout without a migration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict

from scaleworld.data.layout import FLAG, DatasetError


def upgrade_rows(rows: Any, manifest: dict[str, Any], *, where: Path) -> Any:
    """Format 1 rows (TensorDict [N] of memmaps) in the format 2 layout: reward and flags as [N, 1]
    views of the same files, ``("next", "truncated")`` and ``("next", "done")`` also set on the last
    row of each episode the step budget cut (format 1 left it unmarked), and the root ``is_init``,
    ``done``, ``terminated``, ``truncated``. Only those columns are computed (N bytes each)."""
    n = rows.batch_size[0]
    nxt = rows["next"]
    cut = torch.zeros(n, dtype=torch.bool)
    for e in manifest["episodes"]:
        if not e["complete"]:
            cut[e["start"] + e["length"] - 1] = True
    if bool(torch.as_tensor(nxt["done"])[cut].any()):
        raise DatasetError(f"{where}: an episode the manifest calls incomplete ends with done: collect again")
    step = torch.as_tensor(rows["step"])
    no = torch.zeros(n, *FLAG, dtype=torch.bool)
    flags = {k: nxt[k].unsqueeze(-1) for k in ("reward", "terminated", "life_loss")}
    flags["truncated"] = (torch.as_tensor(nxt["truncated"]) | cut).unsqueeze(-1)
    flags["done"] = (torch.as_tensor(nxt["done"]) | cut).unsqueeze(-1)
    obs = "tokens" if "tokens" in rows.keys() else "pixels"
    return TensorDict({obs: rows[obs], "action": rows["action"], "episode": rows["episode"], "step": rows["step"],
                       "is_init": (step == 0).unsqueeze(-1), "done": no, "terminated": no.clone(),
                       "truncated": no.clone(), "next": TensorDict(flags, batch_size=[n])}, batch_size=[n])

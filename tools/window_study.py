"""Which training window set serves a world model's episode edges? (issue 31 item 8)

For every finished dynamics job of a run root (``RUN_ROOT/dynamics/<id>/``), whatever its window
set (``train.windows``: ``inside`` or ``edge_fair``, scaleworld.data.sampling), this scores the
final checkpoint on each game's held-out episodes (the model's own split, as the fidelity job does)
and reports, per window set, game and seed:

- ``nll``: next-latent NLL in nats per frame over every scored transition (fidelity's figure:
  `one_step_metrics`, whose number is re-derived here from per-position losses as a check);
- ``first_nll``: the same NLL on the transitions into each episode's steps 1..k (the first k
  predicted frames; step 0 is never a target);
- ``last_nll``: the same on the transitions into the last k steps of each episode that ended in a
  game over (episodes the step budget cut end at an arbitrary step and are left out);
- ``term_f1``: termination F1 at p > 0.5 over all held-out steps (fidelity's figure; None when no
  step is or is predicted terminal), and ``term_p``: the mean predicted termination probability at
  the true terminal steps, with ``terminals``, how many there are (F1 from one or two game overs
  is a coin, not a measurement).

Held-out episodes are read in fidelity's tiling: consecutive windows of the model's context from
each episode's first step, so the first k targets always sit at window positions 1..k. A
transition into a step at a window start is not scored (as in fidelity), so ``last_nll`` may read
fewer than k targets of an episode.

``--extra DIR`` (repeatable): token datasets of fresh episodes (another collection under the same
protocol, encoded by the run's tokenizer) scored whole beside the held-out split: a pilot holds
out two episodes per game, one of them ending in a game over.

Jobs are found from their folders, not plan.json (which names only the last spec run into the root),
so the two window sets can be run one after the other into one run root, sharing all upstream jobs:

    R=/tmp/window_study/run; S="policy.enabled=false models.sizes=[tiny-d2] modes.joint=false"
    scaleworld run studies/pilot_cpu.yaml run_root=$R $S                        # inside (default)
    scaleworld run studies/pilot_cpu.yaml run_root=$R $S train.windows=edge_fair
    scaleworld data collect --game Boxing --steps 40000 --seed 1000 --out F/Boxing     # optional:
    scaleworld tokens encode --tokenizer $R/tokenizer/<id> --data F/Boxing --out F/Boxing.tokens
    .venv/bin/python tools/window_study.py $R [--k 4] [--extra F/Boxing.tokens ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.sampling import split_episodes, window_rows
from scaleworld.data.windows import WINDOWS
from scaleworld.evaluation.fidelity import held_out_windows, one_step_metrics
from scaleworld.models.dynamics_config import TERMINATION_TARGETS
from scaleworld.models.model_files import load_dynamics
from scaleworld.objectives.world_model import DynamicsLoss

METRICS = ("nll", "first_nll", "last_nll", "term_f1", "term_p")


@torch.no_grad()
def edge_metrics(model, ds: OfflineDataset, episodes: torch.Tensor, game: int | None, *, termination: str,
                 k: int) -> dict:
    """The figures of the module docstring for `model` on `episodes` of `ds`."""
    loss = DynamicsLoss(model, termination=termination)
    length = model.config.context
    starts, lengths = ds.episode_starts[episodes], ds.episode_lengths[episodes]  # [E]
    terminated = ds.data["next", "terminated"].reshape(-1)[starts + lengths - 1].bool()  # [E] ends in a game over
    sums = defaultdict(float)
    windows = list(held_out_windows(ds, episodes, length))
    for i in range(0, len(windows), 32):
        first, remaining, which = torch.tensor(windows[i: i + 32]).T  # [3, B]
        index, mask = window_rows(first, remaining, length)
        td = ds.data[index.reshape(-1)].reshape(len(first), length).to_tensordict()
        td["mask"] = mask
        if game is not None:
            td["game"] = torch.full(td.batch_size, game, dtype=torch.int64)
        terms = loss.terms(td)
        nll, scored = terms["latent"].double(), terms["latent_mask"]  # [B, L-1]: targets at positions 1..L-1
        target = (first - starts[which])[:, None] + torch.arange(1, length)  # [B, L-1] episode step predicted
        n = lengths[which][:, None]
        for name, where in (("all", scored), ("first", scored & (target <= k)),
                            ("last", scored & (target >= n - k) & terminated[which][:, None])):
            sums[name + "_nats"] += float((nll * where).sum())
            sums[name + "_frames"] += int(where.sum())
        true = loss.termination_target(td) & mask  # [B, L]
        sums["term_p"] += float(torch.sigmoid(terms["out"]["termination_logits"])[true].sum())
        sums["terminals"] += int(true.sum())
    fidelity = one_step_metrics(model, ds, episodes, game, termination=termination)
    nll = sums["all_nats"] / sums["all_frames"]
    assert abs(nll - fidelity["nll_nats_per_frame"]) < 1e-3 * max(1.0, nll), (nll, fidelity["nll_nats_per_frame"])

    def mean(name):
        return sums[name + "_nats"] / sums[name + "_frames"] if sums[name + "_frames"] else None

    return {"nll": fidelity["nll_nats_per_frame"], "first_nll": mean("first"), "last_nll": mean("last"),
            "term_f1": fidelity["termination_f1"],
            "term_p": sums["term_p"] / sums["terminals"] if sums["terminals"] else None,
            "terminals": int(sums["terminals"]), "episodes": len(episodes),
            "terminated_episodes": int(terminated.sum()),
            "first_frames": int(sums["first_frames"]), "last_frames": int(sums["last_frames"]),
            "transitions": fidelity["transitions"]}


def dynamics_runs(root: Path):
    """(job dir, job.json) of every finished dynamics job under `root`."""
    for job in sorted((root / "dynamics").glob("*/job.json")):
        if (job.parent / "done.json").is_file():
            yield job.parent, json.loads(job.read_text())


def measure(root: Path, k: int, extra: list[Path]) -> list[dict]:
    rows = []
    fresh = [OfflineDataset.open(p) for p in extra]
    for folder, job in dynamics_runs(root):
        model, identity = load_dynamics(folder)
        termination = identity.get("termination", TERMINATION_TARGETS[0])
        datasets = [OfflineDataset.open(root / "tokens" / i / "tokens") for i in job["inputs"]
                    if (root / "tokens" / i / "tokens").is_dir()]
        tokenizer = {ds.manifest["tokenizer"]["sha256"] for ds in datasets}
        games = list(model.config.games)
        base = {"windows": job["config"].get("windows") or WINDOWS[0], "size": job["labels"].get("size"),
                "seed": job["labels"].get("seed"), "mode": "joint" if games else "single", "job": folder.name}
        sets = [("held_out", ds, split_episodes(len(ds.episode_lengths), val_fraction=identity["val_fraction"],
                                                 seed=identity["split_seed"])[1]) for ds in datasets]
        trained = games or [datasets[0].game]
        sets += [("fresh", ds, torch.arange(len(ds.episode_lengths))) for ds in fresh
                 if ds.game in trained and ds.manifest["tokenizer"]["sha256"] in tokenizer]
        for split, ds, episodes in sets:
            game = games.index(ds.game) if games else None
            rows.append({**base, "split": split, "game": ds.game,
                         **edge_metrics(model, ds, episodes, game, termination=termination, k=k)})
            print(f"  {base['windows']:9} {ds.game:13} seed {base['seed']} {split:8} nll {rows[-1]['nll']:.3f}",
                  flush=True)
    return rows


def table(rows: list[dict], k: int) -> str:
    """Per split, mode and size, one line per figure and game: each window set's mean over seeds
    [each seed's value, in seed order], and the difference of the means (edge_fair - inside)."""
    def mean(values):
        known = [v for v in values if v is not None]
        return statistics.mean(known) if known else None

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    groups = defaultdict(lambda: defaultdict(list))  # (split, mode, size) -> (game, windows) -> rows by seed
    for r in sorted(rows, key=lambda r: r["seed"]):
        groups[(r["split"], r["mode"], r["size"])][(r["game"], r["windows"])].append(r)
    lines = [f"k = {k}; per window set: the mean over seeds [each seed's value, in seed order]"]
    for (split, mode, size), cells in sorted(groups.items()):
        games = sorted({game for game, _ in cells})
        lines += ["", f"{split} episodes, {mode} models of size {size}: " + "; ".join(
            f"{g} {cells[(g, w)][0]['episodes']} episodes, {cells[(g, w)][0]['terminals']} game overs"
            for g in games for w in WINDOWS[:1] if (g, w) in cells),
            f"{'figure':10} {'game':13} " + " ".join(f"{w:40}" for w in WINDOWS) + " edge_fair - inside"]
        for metric in METRICS:
            spec = ".1e" if metric == "term_p" else ".3f"
            for game in games:
                values = {w: [r[metric] for r in cells.get((game, w), [])] for w in WINDOWS}
                means = {w: mean(v) for w, v in values.items()}
                text = {w: fmt(means[w], spec) + " [" + " ".join(fmt(v, spec) for v in values[w]) + "]"
                        for w in WINDOWS}
                diff = None if None in means.values() else means[WINDOWS[1]] - means[WINDOWS[0]]
                lines.append(f"{metric:10} {game:13} " + " ".join(f"{text[w]:40}" for w in WINDOWS)
                             + f" {fmt(diff, '+' + spec)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_root", type=Path)
    parser.add_argument("--k", type=int, default=4, help="edge steps at each end of an episode (default 4)")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="a token dataset of fresh episodes, scored whole (repeatable)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = measure(args.run_root, args.k, args.extra)
    print(table(rows, args.k))
    if args.json:
        args.json.write_text(json.dumps({"k": args.k, "run_root": str(args.run_root), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""`scaleworld report --figures DIR`: per game, a picture of what the tokens keep and what the world
model imagines, so a person sees at a glance whether the ball and paddles survive.

``frames_<Game>.<fmt>``: held-out real frames above their reconstructions (decode(encode(x))), then
two open-loop rollouts made as the fidelity job makes them (its context and horizon, from held-out
windows, the same windows for every model): the real frames, each shown model's imagined ones (per
mode, single then joint then the others: its largest finished size, lowest seed) and the tokenizer
alone on the same real frames, one column per step after the context (t+1, t+2, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from scaleworld.errors import ScaleworldError


def _inputs(graph: Any, job: Any, kind: str) -> list[Any]:
    return [graph.jobs[i] for i in job.inputs if graph.jobs[i].kind == kind]


MODE_ORDER = ("single", "joint", "matched", "joint_short")


def _showcase_dynamics(store: Any, graph: Any, tokens_job: Any) -> list[Any]:
    """The finished dynamics runs reading these tokens to show, one per mode (in MODE_ORDER): each
    mode's largest size, then lowest seed."""
    runs = [d for d in graph.by_kind("dynamics") if tokens_job.id in d.inputs and store.is_done(d)]
    shown = []
    for mode in MODE_ORDER:
        of_mode = [d for d in runs if mode in d.labels.get("modes", []) and d not in shown]
        if of_mode:
            shown.append(min(of_mode, key=lambda d: (-store.outputs(d)["params"]["total"], d.labels.get("seed", 0))))
    return shown


def frame_panels(store: Any, graph: Any, tokens_job: Any, *, frames: int) -> list[tuple[str, Any]] | None:
    """Rows of uint8 frames [n, S, S, 3] with their labels, or None when the game's jobs are not done."""
    import torch

    from scaleworld.data.dataset import OfflineDataset
    from scaleworld.data.sampling import episode_rows, split_episodes
    from scaleworld.evaluation.fidelity import open_loop
    from scaleworld.models.model_files import load_dynamics, load_tokenizer
    from scaleworld.models.tokenizer_quality import spread

    tokenizers, collects = _inputs(graph, tokens_job, "tokenizer"), _inputs(graph, tokens_job, "collect")
    if not (tokenizers and collects and store.is_done(tokenizers[0]) and store.is_done(collects[0])):
        return None
    tokenizer, _ = load_tokenizer(store.job_dir(tokenizers[0]))
    pixels = OfflineDataset.open(store.job_dir(collects[0]) / "dataset")
    c = tokenizers[0].config
    # (a tokenizer job planned before its split seed was recorded split by its training seed)
    train, held_out = split_episodes(len(pixels.episode_lengths), val_fraction=c["val_fraction"],
                                     seed=c.get("split_seed", c["train"]["seed"]))
    rows = spread(episode_rows(pixels.episode_starts, pixels.episode_lengths, held_out if len(held_out) else train),
                  frames)
    real = torch.as_tensor(pixels.data["pixels"][rows])
    panels = [("held-out frames", real), ("decode(encode(x))", tokenizer.decode(tokenizer.encode(real)))]
    tokens = OfflineDataset.open(store.job_dir(tokens_job) / "tokens")
    loops = []
    for dynamics in _showcase_dynamics(store, graph, tokens_job):
        fidelity = [f for f in graph.by_kind("fidelity") if dynamics.id in f.inputs]
        if not fidelity:
            continue
        model, identity = load_dynamics(store.job_dir(dynamics))
        games = list(model.config.games)
        _, val = split_episodes(len(tokens.episode_lengths), val_fraction=identity["val_fraction"],
                                seed=identity["split_seed"])
        f = fidelity[0].config
        loop = open_loop(model, tokenizer, tokens, pixels, val, games.index(tokens.game) if games else None,
                         context_steps=f["context_steps"], horizon=f["horizon"], rollouts=2, keep=2,
                         generator=torch.Generator().manual_seed(0))  # the same windows for every model
        labels = dynamics.labels
        loops.append((f"{'/'.join(labels.get('modes', []))} {labels.get('size')} seed {labels.get('seed')}", loop))
    for r in range(len(loops[0][1].get("frames", {}).get("real", [])) if loops else 0):
        panels.append((f"rollout {r + 1}: real", loops[0][1]["frames"]["real"][r]))
        panels += [(f"imagined: {what}", loop["frames"]["imagined"][r]) for what, loop in loops]
        panels.append(("tokenizer alone", loops[0][1]["frames"]["tokenizer"][r]))
    return panels


def write_frame_grids(root: str | Path, out: str | Path, *, fmt: str, dpi: int, frames: int = 8) -> list[Path]:
    """One ``frames_<Game>.<fmt>`` per game whose tokenizer and data are done; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scaleworld.study.store import RunStore

    store = RunStore(Path(root))
    graph = store.read_plan()
    out = Path(out)
    written, seen = [], set()
    for tokens_job in graph.by_kind("tokens"):
        game = tokens_job.labels.get("game")
        if game in seen:
            continue
        try:
            panels = frame_panels(store, graph, tokens_job, frames=frames)
        except ScaleworldError as exc:  # e.g. a tokenizer of an older version: the other figures still come
            print(f"frames_{game}.png: not drawn ({exc})", file=sys.stderr)
            continue
        if panels is None:
            continue
        seen.add(game)
        cols = max(len(p) for _, p in panels)
        height = 1.4 * len(panels) + 0.4
        fig, axes = plt.subplots(len(panels), cols, figsize=(1.3 * cols + 1.6, height), squeeze=False)
        for i, (row, (label, images)) in enumerate(zip(axes, panels)):
            for j, ax in enumerate(row):
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(images):
                    ax.imshow(images[j].numpy())
                    if label.startswith("rollout") or (i == 0):  # the columns' times: frames, or steps ahead
                        ax.set_title(f"t+{j + 1}" if label.startswith("rollout") else f"frame {j + 1}", fontsize=7)
                else:
                    ax.axis("off")
            row[0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        fig.suptitle(f"{game}: what the tokens keep and what each model imagines", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))  # the title's own band, above the column times
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"frames_{game}.{fmt}"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        written.append(path)
    return written

"""Collect a fixed offline dataset: a game and a policy in, a verified dataset folder out."""

from __future__ import annotations

import datetime
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from scaleworld.atari.envs import VectorAtari, VectorStep
from scaleworld.atari.games import Game, get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.data.files import file_table, staging_dir, write_json_atomic
from scaleworld.data.layout import FORMAT, MANIFEST, STORAGE
from scaleworld.errors import ScaleworldError
from scaleworld.progress import progress_bar
from scaleworld.version import __version__

Policy = Callable[[TensorDictBase], TensorDictBase]
"""Every policy scaleworld runs: a TensorDict of observations in, the same with ``action`` out. In
the real game it reads ``pixels``, ``action_mask`` and ``is_init`` (`policy_input`); in imagination
``latent``, ``hidden`` and ``action_mask`` (`scaleworld.imagination.core.Imagination.rollout`)."""


def policy_input(state: VectorStep, game: Game) -> TensorDict:
    """What a policy sees: ``pixels`` uint8 [N, S, S, 3], ``action_mask`` bool [N, 18] and
    ``is_init`` bool [N, 1] (the first observation of an episode: stateful policies restart on it)."""
    n = state.obs.shape[0]
    mask = torch.tensor(game.action_mask()).expand(n, -1)
    return TensorDict(
        {"pixels": torch.from_numpy(state.obs), "action_mask": mask, "is_init": torch.from_numpy(state.first)[:, None]},
        batch_size=[n],
    )


class Acting:
    """Acts with `policy` for the N emulators of a `VectorAtari`, carrying the state the policy keeps in
    the tensordict from one step to the next as TorchRL's `step_mdp` does: what it writes under
    ``"next"`` (an expert's ``("next", "expert_view")``) is at the root of its next input. Stateless
    policies write nothing there."""

    def __init__(self, policy: Policy, game: Game):
        self.policy = policy
        self.game = game
        self.state: TensorDictBase | None = None
        self.output: TensorDictBase | None = None  # the policy's last output (what an observer reads)

    def __call__(self, step: VectorStep) -> np.ndarray:
        """The policy's actions int64 [N] for every emulator (ignored where not ready)."""
        td = policy_input(step, self.game)
        if self.state is not None:  # the new observation wins over a carried entry of the same name
            td.update(self.state.exclude(*td.keys(True, True)))
        with torch.no_grad():
            out = self.policy(td)
        self.state, self.output = out.get("next", None), out
        return out["action"].numpy().astype(np.int64)


def _episode_rows(rows: list[tuple], episode: int, *, complete: bool) -> TensorDict:
    """One episode's rows in the dataset layout (`scaleworld.data.dataset`): flags and reward [n, 1];
    an episode the step budget cut (not `complete`) is truncated at its last row."""
    pixels, actions, rewards, terminated, truncated, life_loss = zip(*rows)
    n = len(rows)
    term = torch.tensor(terminated)[:, None]
    trunc = torch.tensor(truncated)[:, None]
    if not complete:
        trunc[-1] = True
    no = torch.zeros(n, 1, dtype=torch.bool)
    return TensorDict(
        {
            "pixels": torch.from_numpy(np.stack(pixels)),
            "action": torch.tensor(actions, dtype=torch.int64),
            "episode": torch.full((n,), episode, dtype=torch.int64),
            "step": torch.arange(n, dtype=torch.int64),
            "is_init": torch.arange(n)[:, None] == 0,
            "done": no,
            "terminated": no.clone(),
            "truncated": no.clone(),
            "next": {
                "reward": torch.tensor(rewards, dtype=torch.float32)[:, None],
                "terminated": term,
                "truncated": trunc,
                "done": term | trunc,
                "life_loss": torch.tensor(life_loss)[:, None],
            },
        },
        batch_size=[n],
    )


def collect_dataset(
    *,
    game: Game | str,
    policy: Policy,
    policy_identity: dict[str, Any],
    steps: int,
    out: str | Path,
    protocol: Protocol = Protocol(),
    seed: int = 0,
    num_envs: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Play `policy` in `num_envs` emulators until `steps` agent steps are recorded; write `out`.

    Episodes are written contiguously in the order they end (then the unfinished ones, by
    emulator index), so the result depends only on the arguments. Returns the manifest.
    """
    from torchrl.data import LazyMemmapStorage

    game = game if isinstance(game, Game) else get_game(game)
    out = Path(out)
    if steps < 1 or num_envs < 1:
        raise ScaleworldError(f"--steps ({steps}) and --envs ({num_envs}) must be at least 1")
    if out.exists():
        raise ScaleworldError(f"{out} already exists: choose another --out or remove it")
    if policy_identity.get("game", game.name) != game.name:
        raise ScaleworldError(f"the policy is an expert of {policy_identity['game']}, not of {game.name}: collect "
                              f"{game.name} with an expert of {game.name}")

    with staging_dir(out) as tmp, VectorAtari(game, num_envs, protocol=protocol) as env:
        storage = LazyMemmapStorage(steps, scratch_dir=tmp / STORAGE)
        episodes: list[dict[str, Any]] = []
        written = 0

        def flush(rows: list[tuple], complete: bool) -> None:
            nonlocal written
            if not rows:
                return
            td = _episode_rows(rows, len(episodes), complete=complete)
            storage.set(range(written, written + len(rows)), td)
            episodes.append(
                {
                    "start": written,
                    "length": len(rows),
                    "return": float(td["next", "reward"].double().sum()),
                    "complete": complete,
                    "terminated": bool(td["next", "terminated"][-1, 0]),
                }
            )
            written += len(rows)

        buffers: list[list[tuple]] = [[] for _ in range(num_envs)]
        recorded = 0
        state = env.reset(seed=seed)
        acting = Acting(policy, game)
        with progress_bar(progress, f"collect {game.name}", steps) as advance:
            while recorded < steps:
                obs = state.obs
                actions = acting(state)
                state = env.step(actions)
                before = recorded
                for i in np.flatnonzero(state.acted):
                    if recorded == steps:
                        break  # the budget ran out inside this vector step
                    buffers[i].append(
                        (obs[i].copy(), int(actions[i]), float(state.reward[i]), bool(state.terminated[i]),
                         bool(state.truncated[i]), bool(state.life_loss[i]))
                    )
                    recorded += 1
                    if state.terminated[i] or state.truncated[i]:
                        flush(buffers[i], complete=True)
                        buffers[i] = []
                advance(recorded - before)
        for rows in buffers:
            flush(rows, complete=False)
        storage.dumps(tmp / STORAGE)  # zero-copy: writes storage_metadata.json beside the memmaps

        complete = [e["return"] for e in episodes if e["complete"]]
        manifest = {
            "format": FORMAT,
            "scaleworld_version": __version__,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "game": {"name": game.name, "rom": game.rom, "legal_actions": list(game.legal_actions)},
            "protocol": protocol.to_dict(),
            "policy": policy_identity,
            "collection": {"seed": seed, "num_envs": num_envs},
            "counts": {
                "steps": steps,
                "episodes": len(episodes),
                "complete_episodes": len(complete),
            },
            "returns": {
                "complete_episode_returns": complete,
                "mean": float(np.mean(complete)) if complete else None,
            },
            "episodes": episodes,
            "files": file_table(tmp),
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return manifest

"""Scoring a policy in the real game under the protocol: the random (and later expert) anchors.

Episodes run to the game's end or the frame cap; a lost life never ends an episode. To avoid
the bias of keeping whichever episodes finish first (short ones), emulator i plays exactly its
quota of episodes, fixed before the run, and the scores are reported in emulator order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tensordict import TensorDictBase

from scaleworld.atari.envs import VectorAtari, VectorStep
from scaleworld.atari.games import Game, get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.data.collect import Acting, Policy
from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.version import __version__

SCORE_FORMAT = "scaleworld.policy-score/1"


def score_policy(
    *,
    game: Game | str,
    policy: Policy,
    policy_identity: dict[str, Any],
    episodes: int,
    protocol: Protocol = Protocol(),
    seed: int = 0,
    num_envs: int = 8,
    observe: Callable[[TensorDictBase, VectorStep, VectorStep, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Play `episodes` full episodes; return a score record (raw returns and their summary).
    `observe(output, before, after, counting)`, if given, sees every step: the policy's output
    tensordict, the emulators' state it acted on, the state its actions led to, and bool [N] which
    emulators play an episode that counts (one that met its quota plays on until the others do)."""
    game = game if isinstance(game, Game) else get_game(game)
    if episodes < 1:
        raise ScaleworldError(f"--episodes={episodes} must be at least 1")
    num_envs = min(num_envs, episodes)
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    returns: list[list[float]] = [[] for _ in range(num_envs)]
    lengths: list[list[int]] = [[] for _ in range(num_envs)]
    running = np.zeros(num_envs)
    steps = np.zeros(num_envs, np.int64)
    with VectorAtari(game, num_envs, protocol=protocol) as env:
        state = env.reset(seed=seed)
        acting = Acting(policy, game)
        while any(len(r) < q for r, q in zip(returns, quota)):
            counting = np.array([len(r) < q for r, q in zip(returns, quota)])
            before, state = state, env.step(acting(state))
            if observe is not None:
                observe(acting.output, before, state, counting)
            running += state.reward
            steps += state.acted
            for i in np.flatnonzero(state.terminated | state.truncated):
                if len(returns[i]) < quota[i]:
                    returns[i].append(float(running[i]))
                    lengths[i].append(int(steps[i]))
                running[i] = 0.0
                steps[i] = 0
    flat = [r for per_env in returns for r in per_env]
    return {
        "format": SCORE_FORMAT,
        "scaleworld_version": __version__,
        "game": game.name,
        "policy": policy_identity,
        "protocol": protocol.to_dict(),
        "seed": seed,
        "episodes": episodes,
        "returns": flat,
        "lengths": [n for per_env in lengths for n in per_env],
        "mean": float(np.mean(flat)),
        "std": float(np.std(flat, ddof=1)) if len(flat) > 1 else 0.0,
        "sem": float(np.std(flat, ddof=1) / np.sqrt(len(flat))) if len(flat) > 1 else 0.0,
    }


def write_score(record: dict[str, Any], out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, record)

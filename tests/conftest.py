"""Shared fixtures: small real datasets collected once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")  # before torchrl is first imported

import pytest  # noqa: E402

from scaleworld.atari.protocol import Protocol  # noqa: E402
from scaleworld.data.collect import collect_dataset  # noqa: E402
from scaleworld.experts.random_policy import RandomPolicy  # noqa: E402

# Short episodes (a 400-frame cap = at most 100 agent steps) give many episode boundaries in a
# few hundred steps, which is what the sampling and invariant tests need.
SHORT = Protocol(max_episode_frames=400, noop_max=8)


def collect(out, *, game="Breakout", steps=600, seed=0, protocol=SHORT, num_envs=4):
    policy = RandomPolicy(seed=seed)
    collect_dataset(
        game=game, policy=policy, policy_identity=policy.identity, steps=steps, out=out,
        protocol=protocol, seed=seed, num_envs=num_envs, progress=False,
    )
    return out


@pytest.fixture(scope="session")
def breakout_ds(tmp_path_factory):
    return collect(tmp_path_factory.mktemp("data") / "breakout")


@pytest.fixture(scope="session")
def pong_ds(tmp_path_factory):
    return collect(tmp_path_factory.mktemp("data") / "pong", game="Pong", steps=300, seed=1)

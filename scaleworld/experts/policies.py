"""Turning a policy name from the CLI or a spec into a policy object."""

from __future__ import annotations

from pathlib import Path

from scaleworld.errors import ScaleworldError

POLICIES = ("random", "an expert checkpoint folder (holding expert.json)")


def make_policy(name: str, *, seed: int, protocol=None, sampling: str = "sample", epsilon: float = 0.0):
    """Return a policy (TensorDict -> TensorDict with "action") with an ``identity`` dict.

    `name` is "random" or the path of an expert checkpoint folder (scaleworld/experts/checkpoint.py);
    `protocol` (the one it will play under), `sampling` and `epsilon` apply to experts only: an expert
    refuses a protocol other than the one it learned with (`load_expert`).
    """
    if name == "random":
        from scaleworld.data.random_policy import RandomPolicy

        return RandomPolicy(seed=seed)
    if Path(name).is_dir():
        from scaleworld.experts.checkpoint import load_expert

        return load_expert(name, seed=seed, sampling=sampling, epsilon=epsilon, protocol=protocol)
    raise ScaleworldError(f"unknown policy {name!r}: valid policies are {'; '.join(POLICIES)}")

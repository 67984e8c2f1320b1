"""Turning a policy name from the CLI or a spec into a policy object."""

from __future__ import annotations

from scaleworld.errors import ScaleworldError

POLICIES = ("random",)


def make_policy(name: str, *, seed: int):
    """Return a policy (TensorDict -> TensorDict with "action") with an ``identity`` dict."""
    if name == "random":
        from scaleworld.experts.random_policy import RandomPolicy

        return RandomPolicy(seed=seed)
    raise ScaleworldError(f"unknown policy {name!r}: valid policies are {', '.join(POLICIES)}")

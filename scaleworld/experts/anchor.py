"""The expert anchor: an expert's score under the protocol, stored beside its checkpoint.

Expert-random normalisation divides by (expert score - random score), both measured by
scaleworld under the same protocol. `score_expert` plays E full episodes with `score_policy`
(no life-loss termination, the frame cap as truncation) and writes the record to
``DIR/score.json``. `load_expert` then puts that score into the expert policy's identity, so a
dataset collected from the expert records it in its manifest (only if the score was measured
for the same program: the record carries the program's SHA-256).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaleworld.atari.protocol import Protocol
from scaleworld.evaluation.scores import score_policy, write_score
from scaleworld.experts.checkpoint import SCORE_JSON, load_expert, read_expert_meta


def expert_protocol(path: str | Path) -> Protocol:
    """The protocol an expert was trained under (``expert.json``), or the default one if not recorded."""
    recorded = read_expert_meta(path).get("protocol")
    return Protocol() if recorded is None else Protocol.from_dict(recorded)


def score_expert(
    path: str | Path,
    *,
    episodes: int,
    protocol: Protocol | None = None,
    seed: int = 0,
    num_envs: int = 8,
    sampling: str = "sample",
    epsilon: float = 0.0,
    out: str | Path | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Score the expert in `path` over `episodes` full episodes; write the record to `out` (unless
    not `write`: the record is only returned).

    `protocol` defaults to the one the expert was trained under; `out` defaults to
    ``path/score.json`` (the anchor that `load_expert` reads back).
    """
    path = Path(path)
    protocol = expert_protocol(path) if protocol is None else protocol
    policy = load_expert(path, seed=seed, sampling=sampling, epsilon=epsilon, protocol=protocol)
    identity = policy.identity
    identity.pop("score", None)  # the record is the score; don't nest an older one inside it
    record = score_policy(
        game=policy.game, policy=policy, policy_identity=identity, episodes=episodes, protocol=protocol,
        seed=seed, num_envs=num_envs,
    )
    if write:
        write_score(record, path / SCORE_JSON if out is None else out)
    return record

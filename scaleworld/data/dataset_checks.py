"""What a dataset's rows must satisfy: every field's type and shape, TorchRL's flag conventions,
contiguous episodes, legal actions of its game, and every claim of its manifest (counts, returns,
the game and protocol it names). `check_rows` raises a one-line `DatasetError` on the first problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from scaleworld.atari.games import NUM_ACTIONS, get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.data.layout import OBSERVATION, STEP_FIELDS, DatasetError
from scaleworld.errors import ScaleworldError

if TYPE_CHECKING:  # annotations only: the dataset module runs these checks
    from scaleworld.data.dataset import OfflineDataset


def check_rows(ds: OfflineDataset) -> None:
    """Every invariant of the rows, then every claim of the manifest against them."""
    _check_invariants(ds)
    _check_claims(ds)


def _check_invariants(ds: OfflineDataset) -> None:
    where = ds.path
    m = ds.manifest
    data = ds.data
    steps = m["counts"]["steps"]
    if len(ds) != steps:
        raise DatasetError(f"{where}: {len(ds)} rows, the manifest says {steps}: collect again")
    size = m["protocol"]["frame_size"]
    fields = {OBSERVATION[ds.format]: (torch.uint8, None), **STEP_FIELDS}
    for key, (dtype, shape) in fields.items():
        if key not in data.keys(include_nested=True):
            raise DatasetError(f"{where}: field {key!r} is missing: collect the dataset again")
        if data[key].dtype != dtype:
            raise DatasetError(f"{where}: field {key!r} is {data[key].dtype}, expected {dtype}")
        if shape is not None and tuple(data[key].shape[1:]) != shape:
            want = ", ".join(["N", *map(str, shape)])
            raise DatasetError(f"{where}: field {key!r} is {list(data[key].shape)}, expected [{want}]: "
                               "collect the dataset again")
    if ds.is_tokens:
        groups, classes = m["tokenizer"]["config"]["groups"], m["tokenizer"]["config"]["classes"]
        tokens = torch.as_tensor(data["tokens"])
        if tuple(tokens.shape[1:]) != (groups,) or (tokens.numel() and int(tokens.max()) >= classes):
            raise DatasetError(f"{where}: tokens do not fit the tokenizer ({groups} x {classes}): encode again")
    elif tuple(data["pixels"].shape[1:]) != (size, size, 3):
        raise DatasetError(
            f"{where}: pixels are {tuple(data['pixels'].shape[1:])}, the protocol says "
            f"({size}, {size}, 3): collect the dataset again"
        )
    action = torch.as_tensor(data["action"])
    if action.numel() and (action.min() < 0 or action.max() >= NUM_ACTIONS):
        raise DatasetError(f"{where}: action ids outside [0, {NUM_ACTIONS}): collect again")
    legal = torch.tensor(_game_of(ds).action_mask())
    if not bool(legal[action].all()):
        bad = int(action[~legal[action]][0])
        raise DatasetError(f"{where}: a row holds action {bad}, illegal in {m['game']['name']} (a dataset of "
                           "another game?): collect again")
    episode = torch.as_tensor(data["episode"])
    step = torch.as_tensor(data["step"])

    def flag(key: Any) -> torch.Tensor:
        return torch.as_tensor(data[key]).reshape(-1)

    done, terminated, truncated, reward = (flag(("next", k)) for k in ("done", "terminated", "truncated", "reward"))
    if not bool(torch.isfinite(reward).all()):
        raise DatasetError(f"{where}: a reward is NaN or infinite: collect the dataset again")
    if not bool((done == (terminated | truncated)).all()):
        raise DatasetError(f"{where}: done != terminated | truncated: collect the dataset again")
    if not bool((flag("is_init") == (step == 0)).all()):
        raise DatasetError(f"{where}: is_init is not the first step of each episode: collect again")
    if any(bool(flag(k).any()) for k in ("done", "terminated", "truncated")):
        raise DatasetError(f"{where}: a row was acted from a done observation: collect again")
    for e, entry in enumerate(m["episodes"]):
        start, length = entry["start"], entry["length"]
        rows = slice(start, start + length)
        last = start + length - 1
        if length < 1 or not bool((episode[rows] == e).all()):
            raise DatasetError(f"{where}: episode {e} rows are not contiguous: collect again")
        if not bool((step[rows] == torch.arange(length)).all()):
            raise DatasetError(f"{where}: episode {e} step counter is broken: collect again")
        ends = done[rows].nonzero().flatten().tolist()
        if ends != [length - 1]:
            raise DatasetError(f"{where}: episode {e} has done flags at {ends}: collect again")
        if not entry["complete"] and (bool(terminated[last]) or not bool(truncated[last])):
            raise DatasetError(f"{where}: episode {e} is incomplete but its last row is not truncated only: "
                               "collect again")
        if entry.get("terminated", False) != bool(terminated[last]):
            raise DatasetError(f"{where}: episode {e}'s terminated flag disagrees with its last row: collect again")
        got = float(reward[rows].double().sum())
        if abs(got - entry["return"]) > 1e-3 * max(1.0, abs(got)):
            raise DatasetError(
                f"{where}: episode {e} return {got} != manifest {entry['return']}: collect again"
            )
    covered = sum(e["length"] for e in m["episodes"])
    if covered != steps:
        raise DatasetError(f"{where}: episodes cover {covered} rows of {steps}: collect again")


def _game_of(ds: OfflineDataset) -> Any:
    """The manifest's game, which must be one of the 26 and described as the game table does."""
    g = ds.manifest["game"]
    try:
        game = get_game(str(g.get("name")))
    except ScaleworldError as exc:
        raise DatasetError(f"{ds.path}: {exc}: collect the dataset again") from None
    if g.get("name") != game.name or g.get("rom") != game.rom or list(g.get("legal_actions", [])) != list(
            game.legal_actions):
        raise DatasetError(f"{ds.path}: the manifest's game entry does not describe {game.name} as the game table "
                           "does (edited?): collect the dataset again")
    return game


def _check_claims(ds: OfflineDataset) -> None:
    """The manifest's summaries against its episode table (which `_check_invariants` checked
    against the rows): counts, returns, the policy's own game, the protocol."""

    where, m = ds.path, ds.manifest
    episodes = m["episodes"]
    complete = [e for e in episodes if e["complete"]]
    if m["counts"].get("episodes") != len(episodes):
        raise DatasetError(f"{where}: the manifest counts {m['counts'].get('episodes')} episodes, its table holds "
                           f"{len(episodes)}: collect again")
    if m["counts"].get("complete_episodes") != len(complete):
        raise DatasetError(f"{where}: the manifest counts {m['counts'].get('complete_episodes')} complete episodes, "
                           f"its table holds {len(complete)}: collect again")
    returns = m["returns"].get("complete_episode_returns")
    if returns != [e["return"] for e in complete]:
        raise DatasetError(f"{where}: the manifest's returns summary disagrees with its episodes: collect again")
    mean = m["returns"].get("mean")
    expected = sum(returns) / len(returns) if returns else None
    if (mean is None) != (expected is None) or (mean is not None and abs(mean - expected) > 1e-6 * max(1, abs(mean))):
        raise DatasetError(f"{where}: the manifest's mean return {mean} is not the mean of its episodes' "
                           f"({expected}): collect again")
    policy_game = m["policy"].get("game")
    if policy_game is not None and policy_game != m["game"]["name"]:
        raise DatasetError(f"{where}: collected by an expert of {policy_game}, labelled {m['game']['name']}: "
                           "collect again with that game's expert")
    try:
        Protocol.from_dict(m["protocol"])
    except (ScaleworldError, TypeError) as exc:
        raise DatasetError(f"{where}: the manifest's protocol is invalid ({exc}): collect again") from None

"""Sequence sampling: [B, L] windows inside episodes, episode splits, and multi-game batches.

TorchRL's ``SliceSampler(strict_length=True)`` silently drops episodes shorter than the window;
``strict_length=False`` returns ragged batches. `EpisodeWindowSampler` does neither: an episode
shorter than L yields one window holding the whole episode, padded at the end, with
``mask`` False on the padding. Windows never cross an episode boundary.

Two window sets (`WINDOWS`). ``inside``: uniform over the windows that fit in an episode; an
episode's first and last steps then lie in few windows (step 0 in one, a mid-episode step in L).
``edge_fair``: uniform over the n + L - 1 windows [v, v+L) with v from -(L-1) to n-1, each clipped
to the episode and moved to start at its first step, padded at the end: every step of an episode
lies in exactly L of them, so first and terminal steps are trained on as often as any other. The
clipped windows hold fewer than L steps: the price in tokens per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers.samplers import Sampler
from torchrl.envs import Transform

from scaleworld.data.files import load_tensors
from scaleworld.data.windows import WINDOWS
from scaleworld.errors import ScaleworldError


def split_episodes(
    num_episodes: int, *, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split episode ids 0..E-1 into (train, validation) by whole episodes, fixed by `seed`.

    At least one episode goes to each side when there are two or more and val_fraction > 0.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ScaleworldError(f"val_fraction={val_fraction} must be in [0, 1)")
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = int(round(val_fraction * num_episodes))
    if val_fraction > 0 and num_episodes >= 2:
        n_val = min(max(n_val, 1), num_episodes - 1)
    val = np.sort(order[:n_val])
    train = np.sort(order[n_val:])
    return torch.from_numpy(train), torch.from_numpy(val)


def split_validation(train: torch.Tensor, *, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a run's training episode ids [E] into (fit, validation) by whole episodes: the
    validation split that picks a run's best checkpoint, drawn from the training side only, so it
    never touches the held-out (fidelity) episodes. A stream of its own (`seed`, 1), so the held-out
    split stays as it was. At least one episode on each side."""
    if not 0.0 < fraction < 1.0:
        raise ScaleworldError(f"validation fraction {fraction} must be in (0, 1)")
    if len(train) < 2:
        raise ScaleworldError(f"{len(train)} training episode(s) cannot give a validation split: collect more "
                              "data or set train.validation_fraction=0")
    order = np.random.default_rng([seed, 1]).permutation(len(train))
    n_val = min(max(int(round(fraction * len(train))), 1), len(train) - 1)
    return train[np.sort(order[n_val:])], train[np.sort(order[:n_val])]


def episode_rows(episode_starts: torch.Tensor, episode_lengths: torch.Tensor, episodes: torch.Tensor) -> torch.Tensor:
    """Dataset rows [N] of the given episodes, in the order given."""
    parts = [torch.arange(int(episode_starts[e]), int(episode_starts[e] + episode_lengths[e]))
             for e in episodes.tolist()]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


class EpisodeWindowSampler(Sampler):
    """Uniform over the windows of length L of one episode (a TorchRL `Sampler`).

    ``windows="inside"``: every window ``[s, s+L)`` of an episode of length n >= L is equally likely;
    an episode with n < L counts as one window. ``"edge_fair"``: the n + L - 1 clipped windows of the
    module docstring, so every step is covered equally. ``sample(storage, B * L)`` returns flat storage indices [B*L]
    (padding repeats the episode's last row) and ``{"mask": bool [B*L]}``; `sample_windows`
    gathers them into a TensorDict of batch [B, L].
    """

    def __init__(
        self,
        *,
        episode_starts: torch.Tensor,
        episode_lengths: torch.Tensor,
        seq_len: int,
        generator: torch.Generator,
        episodes: torch.Tensor | None = None,
        windows: str = WINDOWS[0],
    ):
        super().__init__()
        if seq_len < 1:
            raise ScaleworldError(f"seq_len={seq_len} must be at least 1")
        if windows not in WINDOWS:
            raise ScaleworldError(f"windows={windows!r}: use {' or '.join(WINDOWS)}")
        chosen = torch.arange(len(episode_starts)) if episodes is None else episodes.long()
        if len(chosen) == 0:
            raise ScaleworldError("no episodes to sample from: collect more steps or lower val_fraction")
        self.seq_len = seq_len
        self.generator = generator
        self.edge_fair = windows == "edge_fair"
        self.starts = episode_starts[chosen].long()  # [E]
        self.lengths = episode_lengths[chosen].long()  # [E]
        self._per_episode = (self.lengths + seq_len - 1 if self.edge_fair
                             else (self.lengths - seq_len + 1).clamp(min=1))  # [E] windows per episode
        self._cum_windows = self._per_episode.cumsum(0)  # [E]
        self.num_windows = int(self._cum_windows[-1])

    def sample(self, storage: Any, batch_size: int) -> tuple[torch.Tensor, dict]:
        if batch_size % self.seq_len:
            raise ScaleworldError(
                f"batch_size={batch_size} must be a multiple of seq_len={self.seq_len}"
            )
        b = batch_size // self.seq_len
        w = torch.randint(self.num_windows, (b,), generator=self.generator)  # [B] window ids
        ep = torch.searchsorted(self._cum_windows, w, right=True)  # [B] episode of each window
        offset = w - (self._cum_windows[ep] - self._per_episode[ep])  # [B] window number within the episode
        if self.edge_fair:  # virtual start v = offset - (L-1), clipped to the episode: [max(v, 0), min(v+L, n))
            virtual = offset - (self.seq_len - 1)
            start = virtual.clamp(min=0)
            remaining = torch.minimum(virtual + self.seq_len, self.lengths[ep]) - start
        else:
            start, remaining = offset, self.lengths[ep] - offset
        index, mask = window_rows(self.starts[ep] + start, remaining, self.seq_len)
        return index.reshape(-1), {"mask": mask.reshape(-1)}

    def sample_windows(self, data: TensorDict, batch: int) -> TensorDict:
        """B windows from `data` (a TensorDict [N], on any device) as a TensorDict [B, L] with ``mask``."""
        index, info = self.sample(None, batch * self.seq_len)
        return gather_windows(data, index.view(batch, self.seq_len), mask=info["mask"].view(batch, self.seq_len))

    # Sampler bookkeeping: the sampler's only state is its generator.
    def _empty(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.generator.set_state(state_dict["generator"])

    def dumps(self, path: Any) -> None:
        torch.save(self.state_dict(), f"{path}/sampler.pt")

    def loads(self, path: Any) -> None:
        self.load_state_dict(load_tensors(f"{path}/sampler.pt", fix="delete it to start the sampler over"))


def window_rows(first: torch.Tensor, remaining: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dataset rows of windows starting at row `first` (int64 [B]) with `remaining` rows left in
    their episode (int64 [B], at least 1) -> index int64 [B, length] (past the episode's end its
    last row again) and mask bool [B, length] (False there). The one window gather of training
    batches and of fidelity's held-out tiling."""
    steps = torch.arange(length)[None, :]  # [1, L]
    return first[:, None] + torch.minimum(steps, remaining[:, None] - 1), steps < remaining[:, None]


class MultiGameWindows:
    """Windows from several games' datasets with balanced games and a game index.

    Each batch of B rows takes B // G windows from every one of the G games (the remaining
    rows go to games drawn without replacement), so every game gets the same share of updates
    whatever its dataset's size. ``game`` int64 [B, L] (constant along L) indexes `names`.

    `resident_on` (a device other than the CPU): every dataset's rows are copied there once and
    windows are gathered there, so a batch never crosses the bus (a game's token rows are ~5 MB).
    The window draws stay on the CPU `generator`: the same windows on every device. `keys`: only
    these columns in a batch (default: all); with `keys` the games' rows are also joined into one
    store (`store`, game g's rows from `offsets[g]` on), so a batch is one gather instead of one per
    game and a concatenation (26 games: 27 copies of the batch). Without keys (a tokenizer's frames,
    hundreds of MB a game) each game's rows stay where they are.
    """

    def __init__(self, datasets: Sequence[Any], *, seq_len: int, generator: torch.Generator,
                 episodes: Sequence[torch.Tensor] | None = None, windows: str = WINDOWS[0],
                 resident_on: str | torch.device | None = None, keys: Sequence[Any] | None = None):
        if not datasets:
            raise ScaleworldError("a multi-game view needs at least one dataset")
        sizes = {ds.protocol.frame_size for ds in datasets}
        if len(sizes) != 1:
            raise ScaleworldError(
                f"datasets disagree on the frame size ({sorted(sizes)}): recollect them under one protocol"
            )
        names = [ds.game for ds in datasets]
        if len(set(names)) != len(names):
            raise ScaleworldError(f"a game appears twice in the multi-game view: {names}")
        self.names = names
        self.datasets = list(datasets)
        self.generator = generator
        self.seq_len = seq_len
        device = torch.device(resident_on) if resident_on is not None else None
        # `keys`: the columns a batch needs (a loss's in_keys): gathering only those is most of a batch's
        # host time (5 of a token dataset's 13 columns for the dynamics loss); the others are left out
        data = [ds.data if keys is None else ds.data.select(*keys, strict=False) for ds in datasets]
        self.rows = [d if device is None or device.type == "cpu" else d.to(device) for d in data]
        self.offsets = torch.tensor([0] + [len(d) for d in data[:-1]]).cumsum(0)  # int64 [G]
        self.store = None if keys is None else (self.rows[0] if len(self.rows) == 1 else torch.cat(self.rows, 0))
        if self.store is not None:
            self.rows = None  # the store holds them (a second copy would double the device memory)
        self.samplers = [
            EpisodeWindowSampler(
                episode_starts=ds.episode_starts, episode_lengths=ds.episode_lengths,
                seq_len=seq_len, generator=generator,
                episodes=None if episodes is None else episodes[g], windows=windows,
            )
            for g, ds in enumerate(datasets)
        ]

    def _draws(self, batch: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """Per game with windows in this batch, in game order: (game, its own rows int64 [n, L], mask
        bool [n, L]); every draw on the one generator, in this order, whatever gathers them."""
        g = len(self.datasets)
        extra = torch.randperm(g, generator=self.generator)[: batch % g]
        counts = torch.full((g,), batch // g)
        counts[extra] += 1
        draws = []
        for game, sampler in enumerate(self.samplers):
            n = int(counts[game])
            if n:
                index, info = sampler.sample(None, n * self.seq_len)
                draws.append((game, index.view(n, self.seq_len), info["mask"].view(n, self.seq_len)))
        return draws

    def draw(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next batch's windows without gathering them (CPU tensors): store rows int64 [B, L]
        (game g's row i is offsets[g] + i), mask bool [B, L], game int64 [B, L]."""
        draws = self._draws(batch)
        rows = torch.cat([index + self.offsets[game] for game, index, _ in draws])
        mask = torch.cat([m for _, _, m in draws])
        game = torch.cat([torch.full(index.shape, game, dtype=torch.int64) for game, index, _ in draws])
        return rows, mask, game

    def sample(self, batch: int) -> TensorDict:
        if self.store is not None:
            rows, mask, game = self.draw(batch)
            return gather_windows(self.store, rows, mask=mask, game=game)
        parts = []
        for game, index, mask in self._draws(batch):
            part = gather_windows(self.rows[game], index, mask=mask)
            part["game"] = torch.full(part.batch_size, game, dtype=torch.int64, device=part.device)
            parts.append(part)
        return torch.cat(parts, 0)


def gather_windows(rows: TensorDict, index: torch.Tensor, **columns: torch.Tensor) -> TensorDict:
    """rows TensorDict [N] (on any device), index int64 [..., L] (CPU) -> the windows TensorDict
    [..., L] gathered where the rows are, with `columns` (e.g. mask, game: CPU tensors of index's
    shape) moved there beside them."""
    device = rows.device
    if device is not None and device.type != "cpu":
        index = index.to(device, non_blocking=True)
        columns = {k: v.to(device, non_blocking=True) for k, v in columns.items()}
    out = rows[index.reshape(-1)].reshape(*index.shape)
    for key, value in columns.items():
        out[key] = value
    return out


class PackedWindows:
    """The batches of K runs' views (`MultiGameWindows` with one store each) as one [K, B, L] batch:
    each view draws its windows on its own generator exactly as its `sample` would, and the K
    draws are gathered at once from a store of every distinct view's rows (views over the same
    datasets, e.g. the seeds of one game, share one copy). What a packed step samples:
    `torch.stack([v.sample(B) for v in views])` in one gather instead of K gathers and a stack."""

    def __init__(self, views: Sequence[MultiGameWindows]):
        if any(v.store is None for v in views):
            raise ScaleworldError("packed sampling needs views built with `keys` (one store each)")
        self.views = list(views)
        stores, where, self.base = [], {}, []
        for view in self.views:
            key = repr([getattr(ds, "content_id", id(ds)) for ds in view.datasets])  # same content: same rows
            if key not in where:
                where[key] = sum(len(s) for s in stores)
                stores.append(view.store)
            self.base.append(where[key])  # this view's store starts at this row of the pack's
        self.store = stores[0] if len(stores) == 1 else torch.cat(stores, 0)

    def sample(self, batch: int) -> TensorDict:
        draws = [view.draw(batch) for view in self.views]  # K x ([B, L] rows, mask, game)
        rows = torch.stack([rows + base for (rows, _, _), base in zip(draws, self.base)])  # [K, B, L]
        return gather_windows(self.store, rows, mask=torch.stack([d[1] for d in draws]),
                              game=torch.stack([d[2] for d in draws]))


class SlicesAsWindows(Transform):
    """A replay buffer transform: the [B * L] rows TorchRL's `SliceSampler` returns -> [B, L] windows
    with ``mask`` bool [B, L], False on the rows ``pad_output=True`` repeats past a short episode's
    end (found by their repeated ``step``): the layout `DynamicsLoss` reads."""

    def __init__(self, slice_len: int):
        super().__init__(in_keys=["step"], out_keys=["mask"])
        self.slice_len = slice_len

    def forward(self, tensordict: TensorDict) -> TensorDict:
        windows = tensordict.reshape(-1, self.slice_len)
        step = windows["step"]  # [B, L]
        mask = torch.ones_like(step, dtype=torch.bool)
        mask[:, 1:] = step[:, 1:] != step[:, :-1]
        windows["mask"] = mask
        return windows


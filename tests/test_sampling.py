"""Sequence windows stay inside episodes, short episodes are sampled, splits and games balance."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrl.data import ReplayBuffer

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.sampling import EpisodeWindowSampler, MultiGameWindows, split_episodes


def _sampler(ds, seq_len, seed, episodes=None):
    return EpisodeWindowSampler(
        episode_starts=ds.episode_starts, episode_lengths=ds.episode_lengths, seq_len=seq_len,
        generator=torch.Generator().manual_seed(seed), episodes=episodes,
    )


def _assert_inside_episodes(batch):
    mask = batch["mask"]
    episode, step = batch["episode"], batch["step"]
    # within the valid part: one episode, consecutive steps
    assert ((episode == episode[:, :1]) | ~mask).all()
    valid_pairs = mask[:, 1:]
    assert ((step[:, 1:] - step[:, :-1] == 1) | ~valid_pairs).all()
    # padding only after the valid part
    assert (mask.long().cummin(dim=1).values == mask.long()).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), seq_len=st.sampled_from([1, 8, 32, 64, 150]))
def test_windows_never_cross_episode_boundaries(breakout_ds, seed, seq_len):
    ds = OfflineDataset.open(breakout_ds)
    batch = _sampler(ds, seq_len, seed).sample_windows(ds.data, 16)
    assert batch.batch_size == (16, seq_len)
    _assert_inside_episodes(batch)


def test_episodes_shorter_than_the_window_are_sampled_whole_and_padded(breakout_ds):
    ds = OfflineDataset.open(breakout_ds)
    lengths = ds.episode_lengths
    assert lengths.max() <= 100  # the 400-frame cap
    batch = _sampler(ds, 128, seed=0).sample_windows(ds.data, 256)
    _assert_inside_episodes(batch)
    assert (batch["step"][:, 0] == 0).all()  # the whole episode, from its first step
    got = batch["mask"].sum(1)
    want = lengths[batch["episode"][:, 0]]
    assert torch.equal(got, want)
    # every episode is reachable, unlike SliceSampler(strict_length=True), which drops them all
    assert set(batch["episode"][:, 0].tolist()) == set(range(len(lengths)))


def test_windows_are_uniform_over_valid_starts(breakout_ds):
    ds = OfflineDataset.open(breakout_ds)
    sampler = _sampler(ds, 16, seed=3)
    n = 20000
    index, info = sampler.sample(None, n * 16)
    starts = index.reshape(n, 16)[:, 0]
    counts = torch.bincount(starts, minlength=len(ds)).float()
    valid = counts > 0
    assert int(valid.sum()) == sampler.num_windows
    expected = n / sampler.num_windows
    assert (counts[valid] - expected).abs().max() < 6 * expected**0.5


def test_sampler_is_seeded_and_works_inside_a_torchrl_replay_buffer(breakout_ds):
    ds = OfflineDataset.open(breakout_ds)
    a = _sampler(ds, 8, seed=5).sample(None, 64)[0]
    b = _sampler(ds, 8, seed=5).sample(None, 64)[0]
    assert torch.equal(a, b)
    rb = ReplayBuffer(storage=ds.storage, sampler=_sampler(ds, 8, seed=5), batch_size=64)
    data, info = rb.sample(return_info=True)
    assert torch.equal(info["index"], a)
    assert torch.equal(data["pixels"], ds.data["pixels"][a])


def test_split_is_by_whole_episodes_deterministic_and_restricts_sampling(breakout_ds):
    ds = OfflineDataset.open(breakout_ds)
    e = len(ds.episode_lengths)
    train, val = split_episodes(e, val_fraction=0.25, seed=0)
    assert sorted(train.tolist() + val.tolist()) == list(range(e)) and len(val) >= 1
    again = split_episodes(e, val_fraction=0.25, seed=0)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, split_episodes(e, val_fraction=0.25, seed=1)[1])
    batch = _sampler(ds, 8, seed=0, episodes=val).sample_windows(ds.data, 200)
    assert set(batch["episode"][batch["mask"]].tolist()) <= set(val.tolist())


def test_multi_game_batches_are_balanced_and_indexed(breakout_ds, pong_ds):
    datasets = [OfflineDataset.open(breakout_ds), OfflineDataset.open(pong_ds)]
    view = MultiGameWindows(datasets, seq_len=16, generator=torch.Generator().manual_seed(0))
    assert view.names == ["Breakout", "Pong"]
    batch = view.sample(9)
    assert batch.batch_size == (9, 16)
    assert (batch["game"] == batch["game"][:, :1]).all()
    counts = torch.bincount(batch["game"][:, 0], minlength=2).tolist()
    assert sorted(counts) == [4, 5]
    _assert_inside_episodes(batch)
    for g, ds in enumerate(datasets):  # rows of game g really come from game g's data
        rows = batch[batch["game"][:, 0] == g]
        idx = ds.episode_starts[rows["episode"][:, 0]] + rows["step"][:, 0]
        assert torch.equal(rows["pixels"][:, 0], ds.data["pixels"][idx])

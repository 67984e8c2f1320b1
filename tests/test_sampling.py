"""Sequence windows stay inside episodes, short episodes are sampled, splits and games balance."""

import pytest
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


@pytest.mark.parametrize("windows", ["inside", "edge_fair"])
def test_edge_fair_windows_cover_every_step_alike_first_and_terminal_ones_included(breakout_ds, pong_ds, windows):
    """Many windows from two real datasets (L = 16, episodes of 7 to 100 steps): with edge_fair, each
    row's coverage is flat within sampling noise (|count - mean| < 5 sd of a binomial), the first and
    last step of every episode included, and games stay balanced; inside leaves step 0 at ~1/L."""
    datasets = [OfflineDataset.open(breakout_ds), OfflineDataset.open(pong_ds)]
    seq_len, windows_drawn = 16, 24_000
    view = MultiGameWindows(datasets, seq_len=seq_len, generator=torch.Generator().manual_seed(0), windows=windows)
    batch = view.sample(windows_drawn)
    assert (batch["game"][:, 0] == 0).sum() == windows_drawn // 2  # balanced over games
    for game, ds in enumerate(datasets):
        rows = batch[batch["game"][:, 0] == game]
        index = ds.episode_starts[rows["episode"]] + rows["step"]  # the dataset row of each position
        counts = torch.bincount(index[rows["mask"]], minlength=len(ds)).double()  # [N]
        assert bool((rows["step"][rows["mask"]] < ds.episode_lengths[rows["episode"][rows["mask"]]]).all())
        first, last = ds.episode_starts, ds.episode_starts + ds.episode_lengths - 1
        if windows == "edge_fair":
            virtual = int((ds.episode_lengths + seq_len - 1).sum())  # windows per game: n + L - 1 per episode
            p = seq_len / virtual  # every row lies in L of them
            mean, sd = (windows_drawn // 2) * p, ((windows_drawn // 2) * p * (1 - p)) ** 0.5
            assert float((counts - mean).abs().max()) < 5 * sd, (counts.min(), counts.max(), mean, sd)
            edges = torch.cat([first, last])  # every episode's first and terminal (or last) step
            assert float((counts[edges] - mean).abs().max()) < 5 * sd
        else:
            long_episodes = ds.episode_lengths >= 4 * seq_len
            mid = counts[first[long_episodes] + 2 * seq_len]
            assert float(counts[first[long_episodes]].mean()) < 0.2 * float(mid.mean())  # the bias edge_fair removes


def test_edge_fair_windows_start_at_their_episode_and_pad_only_at_the_end(breakout_ds):
    ds = OfflineDataset.open(breakout_ds)
    sampler = EpisodeWindowSampler(episode_starts=ds.episode_starts, episode_lengths=ds.episode_lengths, seq_len=16,
                                   generator=torch.Generator().manual_seed(1), windows="edge_fair")
    batch = sampler.sample_windows(ds.data, 2000)
    mask = batch["mask"]
    assert bool(mask[:, 0].all())  # no window starts with padding
    assert bool((mask[:, 1:] <= mask[:, :-1]).all())  # once padding starts, it goes on to the end
    episode = batch["episode"]
    assert bool((episode == episode[:, :1]).all())  # one episode per window
    steps = batch["step"]
    assert bool(((steps[:, 1:] - steps[:, :-1] == 1) | ~mask[:, 1:]).all())  # consecutive steps where valid
    assert bool((mask.sum(1) < 16).any()) and bool((steps[:, 0] == 0).float().mean() > 0.05)


def test_the_windows_setting_enters_identities_only_when_chosen():
    from pathlib import Path

    from scaleworld.study.expand import build_graph
    from scaleworld.study.spec import SpecError
    from scaleworld.study.spec_load import load_spec

    smoke = Path(__file__).resolve().parents[1] / "studies" / "smoke.yaml"
    default = build_graph(load_spec(smoke))
    explicit = build_graph(load_spec(smoke, ["train.windows=inside"]))
    fair = build_graph(load_spec(smoke, ["train.windows=edge_fair"]))
    assert set(default.jobs) == set(explicit.jobs)
    assert all(j.config["windows"] == "edge_fair" for j in fair.by_kind("dynamics"))
    assert {j.id for j in fair.by_kind("dynamics")}.isdisjoint(j.id for j in default.by_kind("dynamics"))
    assert {j.id for j in fair.by_kind("tokenizer")} == {j.id for j in default.by_kind("tokenizer")}
    with pytest.raises(SpecError, match="train.windows: 'fair': use inside or edge_fair"):
        load_spec(smoke, ["train.windows=fair"])


def test_a_view_of_the_loss_columns_draws_the_same_windows_with_only_those_columns(breakout_tokens, pong_tokens):
    """`keys` (the loss's in_keys) leaves the other columns out of every batch and changes nothing
    else: the same windows, the same values, the same mask and game index."""
    from scaleworld.models.dynamics import DynamicsModel
    from scaleworld.models.dynamics_config import DynamicsConfig
    from scaleworld.objectives.world_model import DynamicsLoss

    datasets = [OfflineDataset.open(breakout_tokens), OfflineDataset.open(pong_tokens)]
    model = DynamicsModel(DynamicsConfig(width=32, depth=1, heads=2, context=8, games=("Breakout", "Pong")))
    loss = DynamicsLoss(model, termination="life_loss")
    read = [k for k in loss.in_keys if k not in ("mask", "game")]
    every = MultiGameWindows(datasets, seq_len=8, generator=torch.Generator().manual_seed(3))
    some = MultiGameWindows(datasets, seq_len=8, generator=torch.Generator().manual_seed(3), keys=read)
    for _ in range(3):
        full, part = every.sample(10), some.sample(10)
        assert set(part.keys(True, True)) == {*read, "mask", "game"} < set(full.keys(True, True))
        assert (full.select(*part.keys(True, True)) == part).all()
    assert some.store is not None and every.store is None  # one gather from one store, against one per game


def test_packed_windows_draw_what_the_runs_own_samplers_draw(breakout_tokens, pong_tokens):
    """A pack's one gather (`PackedWindows`) gives each run the batch its own view would: runs over the
    same data (seeds of one game: one copy of the rows) and over other data (several games' single
    runs, a joint run), each on its own generator."""
    from scaleworld.data.sampling import PackedWindows

    breakout, pong = OfflineDataset.open(breakout_tokens), OfflineDataset.open(pong_tokens)
    keys = ["tokens", "action", ("next", "reward")]

    def views():
        return [MultiGameWindows(games, seq_len=8, generator=torch.Generator().manual_seed(seed), keys=keys)
                for seed, games in enumerate([[breakout], [breakout], [pong], [breakout, pong]])]

    alone, packed = views(), PackedWindows(views())
    # Breakout's rows once for its two runs, Pong's, and the joint run's of both
    assert len(packed.store) == 2 * (len(breakout.data) + len(pong.data))
    for _ in range(3):
        together = packed.sample(6)
        assert together.batch_size == torch.Size([4, 6, 8])
        for k, view in enumerate(alone):
            assert (together[k] == view.sample(6)).all()

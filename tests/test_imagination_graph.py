"""The CUDA-graph mode of imagination, checked on CPU: `GraphedRollout(replay_eagerly=True)` runs all of
its bookkeeping (static buffers, record copies, bucketed restarts with padding, positions, generator
states) with each "replay" recomputed eagerly.

The reference is `PaddedRestarts`, the eager rollout with its restarts padded to the same buckets:
the same arithmetic, so the graphed rollout must equal it exactly. The plain eager rollout prefills
R rows instead of a padded bucket, and CPU BLAS (like cuBLAS) may round another GEMM shape
differently in the last bit: against it the graphed rollout is close (and takes the same discrete
actions, latents and terminations here). tools/gpu_checks.py checks real graph replays on a GPU."""

import pytest
import torch

from scaleworld.errors import ScaleworldError
from scaleworld.imagination.core import Imagination
from scaleworld.imagination.graphed import GraphedRollout, PaddedRestarts, bucket
from scaleworld.models.agent import ActorPolicy
from tests.test_imagination import _policy, _random_world, _starts


def _pair(batch=16, *, games=(), game=None, steps=3, reference=PaddedRestarts):
    """A reference imagination (eager, `reference`) and a plain one to graph, otherwise identical
    (same model, start contexts and generator seed)."""
    model = _random_world(games=games)
    return [kind(model, _starts(game=game, steps=steps), batch=batch, generator=torch.Generator().manual_seed(3))
            for kind in (reference, Imagination)]


def _assert_same(eager, graphed, *, exact=True):
    """exact=False: floats within 1e-5 (last-bit rounding of other GEMM shapes), everything else exact."""
    assert type(graphed) is type(eager) and graphed.batch_size == eager.batch_size
    assert list(graphed.keys(True, True)) == list(eager.keys(True, True))  # same keys, same order
    for key in eager.keys(True, True):
        a, b = eager[key], graphed[key]
        assert (a.dtype, a.shape, a.device) == (b.dtype, b.shape, b.device), key
        tol = 0 if exact or not a.is_floating_point() else 1e-5
        torch.testing.assert_close(b, a, rtol=0, atol=tol, msg=str(key))


def _count_restarts(graphed: GraphedRollout) -> tuple[list[int], list[int]]:
    """Records the row count of every restart and the bucket size of every restart capture."""
    rows, captures = [], []
    restart, capture = graphed._restart, graphed._capture_restart

    def counted_restart(index):
        rows.append(len(index))
        return restart(index)

    def counted_capture(r):
        captures.append(len(r.index))
        return capture(r)

    graphed._restart, graphed._capture_restart = counted_restart, counted_capture
    return rows, captures


@pytest.mark.parametrize("games,game", [((), None), (("Pong", "Breakout"), 1)])
def test_graphed_rollouts_equal_eager_ones_through_terminations_and_across_rollouts(games, game):
    eager_im, graphed_im = _pair(games=games, game=game)
    plain_im = Imagination(eager_im.model, eager_im.starts, batch=16, generator=torch.Generator().manual_seed(3))
    eager_policy, graphed_policy, plain_policy = (_policy(im.model, 5) for im in (eager_im, graphed_im, plain_im))
    graphed = GraphedRollout(graphed_im, replay_eagerly=True)
    for horizon in (12, 7, 1):  # one capture, then the generators and the cache go on across rollouts
        eager = eager_im.rollout(eager_policy, horizon)
        if horizon == 12:
            assert 0.2 < eager["next", "terminated"].float().mean() < 0.8  # many rows end and restart
        td = graphed.rollout(graphed_policy, horizon)
        _assert_same(eager, td)
        _assert_same(plain_im.rollout(plain_policy, horizon), td, exact=False)
        # the imagination is left where the eager rollout leaves it
        for a, b in ((eager_im.latent, graphed_im.latent), (eager_im.hidden, graphed_im.hidden),
                     (eager_im.cache.start, graphed_im.cache.start), (eager_im.cache.pos, graphed_im.cache.pos)):
            assert torch.equal(a, b)
        assert eager_im.cache.position == graphed_im.cache.position == int(graphed_im.cache.pos)
    assert graphed.policy is graphed_policy


def test_many_terminations_restart_rows_in_place_and_a_new_policy_is_captured_again():
    eager_im, graphed_im = _pair(batch=32)
    graphed = GraphedRollout(graphed_im, replay_eagerly=True)
    eager = eager_im.rollout(_policy(eager_im.model, 1), 16)
    _assert_same(eager, graphed.rollout(_policy(graphed_im.model, 1), 16))
    assert eager["next", "terminated"][:, :-1].sum() > 50  # many restarts mid-rollout
    first = graphed.outputs
    greedy = ActorPolicy(_policy(graphed_im.model, 0).agent, greedy=True)  # no generator at all
    _assert_same(eager_im.rollout(ActorPolicy(greedy.agent, greedy=True), 9), graphed.rollout(greedy, 9))
    assert graphed.policy is greedy and graphed.outputs is not first


def test_empty_start_histories_work_too():
    # context_steps=1: prefill gets no tokens, hidden starts at 0; no arithmetic, so even the
    # plain eager rollout (unpadded restarts) is matched exactly
    eager_im, graphed_im = _pair(steps=1, reference=Imagination)
    eager = eager_im.rollout(_policy(eager_im.model, 2), 6)
    _assert_same(eager, GraphedRollout(graphed_im, replay_eagerly=True).rollout(_policy(graphed_im.model, 2), 6))


def test_the_returned_rollout_holds_copies_not_the_static_buffers():
    _, im = _pair()
    graphed = GraphedRollout(im, replay_eagerly=True)
    td = graphed.rollout(_policy(im.model, 5), 4)
    before = td.clone()
    statics = list(graphed.outputs.values()) + [graphed.latent, graphed.hidden]
    for static in statics:
        static.fill_(7) if static.dtype != torch.bool else static.fill_(True)
    graphed.rollout(graphed.policy, 4)  # replays overwrite every static output again
    _assert_same(before, td)
    pointers = {t.untyped_storage().data_ptr() for t in statics}
    assert not pointers & {t.untyped_storage().data_ptr() for t in td.values(True, True)}


def test_on_cpu_graphs_are_refused_with_the_eager_rollout_named():
    eager_im, _ = _pair(reference=Imagination)
    with pytest.raises(ScaleworldError, match="CUDA device.*Imagination.rollout"):
        GraphedRollout(eager_im)


def test_restart_buckets_are_powers_of_two_up_to_the_batch():
    assert [bucket(r, 16) for r in (1, 2, 3, 4, 5, 8, 9, 16)] == [1, 2, 4, 4, 8, 8, 16, 16]
    assert [bucket(r, 12) for r in (7, 8, 9, 12)] == [8, 8, 12, 12]  # the batch itself is the last bucket


def test_restarts_through_many_terminations_pad_to_buckets_captured_once_and_reused_across_rollouts():
    eager_im, graphed_im = _pair(batch=32)
    graphed = GraphedRollout(graphed_im, replay_eagerly=True)
    rows, captures = _count_restarts(graphed)
    policy = _policy(graphed_im.model, 1)
    eager_policy = _policy(eager_im.model, 1)
    _assert_same(eager_im.rollout(eager_policy, 16), graphed.rollout(policy, 16))
    assert rows[0] == 32 and len(rows) > 10  # the first reset of all rows, then restarts at most steps
    assert any(bucket(r, 32) != r for r in rows)  # some row counts needed padding
    assert sorted(captures) == sorted(set(captures)) == sorted({bucket(r, 32) for r in rows})  # once each
    buffers = dict(graphed.restarts)
    for horizon in (16, 9):  # later rollouts (and a new policy's capture) replay the same buckets
        _assert_same(eager_im.rollout(eager_policy, horizon), graphed.rollout(policy, horizon))
    greedy = ActorPolicy(policy.agent, greedy=True)
    _assert_same(eager_im.rollout(ActorPolicy(policy.agent, greedy=True), 9), graphed.rollout(greedy, 9))
    assert len(rows) > 40
    assert all(graphed.restarts[size] is restart for size, restart in buffers.items())
    assert len(captures) == len(graphed.restarts) == len(set(captures))  # no bucket captured twice


def test_a_padded_restart_restarts_only_its_rows_as_the_eager_restart_does():
    eager_im, graphed_im = _pair(batch=16, reference=Imagination)
    graphed = GraphedRollout(graphed_im, replay_eagerly=True)
    graphed.rollout(_policy(graphed_im.model, 5), 3)
    eager_im.rollout(_policy(eager_im.model, 5), 3)
    assert torch.equal(eager_im.generator.get_state(), graphed_im.generator.get_state())
    index = torch.tensor([2, 9, 13])  # 3 rows: a bucket of 4, the first row repeated
    latent_before, hidden_before = graphed.latent.clone(), graphed.hidden.clone()
    start_before = graphed_im.cache.start.clone()
    latent, hidden = eager_im.restart(index)  # the plain eager restart: 3 rows, not padded
    graphed._restart(index)
    assert list(graphed.restarts[4].index) == [2, 9, 13, 2]
    assert torch.equal(eager_im.generator.get_state(), graphed_im.generator.get_state())  # the same draws
    assert torch.equal(graphed_im.cache.start, eager_im.cache.start)
    assert (graphed_im.cache.start[index] == graphed_im.cache.position - 2).all()
    assert torch.equal(graphed.latent[index], latent)
    torch.testing.assert_close(graphed.hidden[index], hidden, rtol=0, atol=1e-5)
    others = torch.ones(16, dtype=torch.bool)
    others[index] = False
    assert torch.equal(graphed.latent[others], latent_before[others])
    assert torch.equal(graphed.hidden[others], hidden_before[others])
    assert torch.equal(graphed_im.cache.start[others], start_before[others])

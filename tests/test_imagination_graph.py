"""The CUDA-graph mode of imagination, checked on CPU: `GraphedRollout(replay_eagerly=True)` runs all of
its bookkeeping (static buffers, record copies, in-place restarts, positions, generator states) with
each "replay" recomputed eagerly, and must give exactly the eager rollout. tools/gpu_checks.py checks
real graph replays against the eager rollout on a GPU."""

import pytest
import torch

from scaleworld.errors import ScaleworldError
from scaleworld.imagination.agent import ActorPolicy
from scaleworld.imagination.core import Imagination
from scaleworld.imagination.graphed import GraphedRollout
from tests.test_imagination import _policy, _random_world, _starts


def _pair(batch=16, *, games=(), game=None, steps=3):
    """Two identical imaginations (same model, start contexts and generator seed)."""
    model = _random_world(games=games)
    return [Imagination(model, _starts(game=game, steps=steps), batch=batch,
                        generator=torch.Generator().manual_seed(3)) for _ in range(2)]


def _assert_same(eager, graphed):
    assert type(graphed) is type(eager) and graphed.batch_size == eager.batch_size
    assert list(graphed.keys(True, True)) == list(eager.keys(True, True))  # same keys, same order
    for key in eager.keys(True, True):
        a, b = eager[key], graphed[key]
        assert (a.dtype, a.shape, a.device) == (b.dtype, b.shape, b.device), key
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=str(key))


@pytest.mark.parametrize("games,game", [((), None), (("Pong", "Breakout"), 1)])
def test_graphed_rollouts_equal_eager_ones_through_terminations_and_across_rollouts(games, game):
    eager_im, graphed_im = _pair(games=games, game=game)
    eager_policy, graphed_policy = _policy(eager_im.model, 5), _policy(graphed_im.model, 5)
    graphed = GraphedRollout(graphed_im, replay_eagerly=True)
    for horizon in (12, 7, 1):  # one capture, then the generators and the cache go on across rollouts
        eager = eager_im.rollout(eager_policy, horizon)
        if horizon == 12:
            assert 0.2 < eager["next", "terminated"].float().mean() < 0.8  # many rows end and restart
        _assert_same(eager, graphed.rollout(graphed_policy, horizon))
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
    eager_im, graphed_im = _pair(steps=1)  # context_steps=1: prefill gets no tokens, hidden starts at 0
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


def test_on_cpu_the_flag_falls_back_to_the_eager_rollout_and_graphs_are_refused():
    eager_im, _ = _pair()
    flagged = Imagination(eager_im.model, eager_im.starts, batch=16, generator=torch.Generator().manual_seed(3),
                          cuda_graph=True)
    assert not flagged.cuda_graph
    _assert_same(eager_im.rollout(_policy(eager_im.model, 5), 8), flagged.rollout(_policy(flagged.model, 5), 8))
    assert flagged._graphed is None
    with pytest.raises(ScaleworldError, match="CUDA device"):
        GraphedRollout(flagged)

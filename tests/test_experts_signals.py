"""PPO's learning-only signals (episodic life, FIRE at the start) and the expert quality gate.

The signals must reach learning (the `MaskedVectorEnv` rows PPO learns from) and nothing else:
the emulators' episodes, the stored datasets and the scores follow the protocol whatever the
expert was trained with. The gate refuses an expert upper anchor that is within noise of random.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.envs.utils import step_mdp

from scaleworld.atari.protocol import Protocol
from scaleworld.data.collect import collect_dataset
from scaleworld.data.dataset import OfflineDataset
from scaleworld.errors import ScaleworldError
from scaleworld.evaluation.control import EXPERT_MARGIN_SE, expert_quality, measure_anchors
from scaleworld.experts.anchor import score_expert
from scaleworld.experts.checkpoint import save_expert
from scaleworld.experts.policies import make_policy
from scaleworld.experts.ppo import PPOConfig, learning_signals
from scaleworld.experts.ppo_config import budget_steps
from scaleworld.experts.tasks import AtariTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BREAKOUT = AtariTask(game="Breakout")


def _play(task: AtariTask, actions: np.ndarray, **signals) -> dict[str, np.ndarray]:
    """Step a `MaskedVectorEnv` of `task` with `actions` [T, N] (indexes); its rows' entries [T, N, ...]."""
    from scaleworld.experts.train_env import MaskedVectorEnv

    env = MaskedVectorEnv(task, actions.shape[1], seed=0, emit_pixels=True, **signals)
    rows = []
    td = env.reset()
    for a in actions:
        td["action"] = torch.from_numpy(a)
        td = env.step(td)
        n = td["next"]
        rows.append({"pixels": n["pixels"].numpy(), "terminated": n["terminated"][:, 0].numpy(),
                     "episode_end": n["episode_end"].numpy(), "acted": n["acted"].numpy(),
                     "episode_step": n["episode_step"].numpy(), "is_init": n["is_init"].numpy(),
                     "reward": n["reward"][:, 0].numpy()})
        td = step_mdp(td)
    env.close()
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_episodic_life_ends_learning_episodes_but_not_the_emulators():
    actions = np.random.default_rng(0).integers(0, len(BREAKOUT.actions), size=(600, 2))
    plain = _play(BREAKOUT, actions, fire_reset=True)
    life = _play(BREAKOUT, actions, fire_reset=True, episodic_life=True)
    # the emulators play exactly the same game: frames, rewards, protocol episode ends
    for key in ("pixels", "reward", "episode_end", "acted", "episode_step", "is_init"):
        assert np.array_equal(plain[key], life[key]), key
    assert np.array_equal(plain["terminated"], plain["episode_end"])  # without it: game overs only here
    lost = life["terminated"] & ~life["episode_end"]  # lost lives, seen by the learner as ends
    assert np.array_equal(life["terminated"] & ~lost, plain["terminated"])
    assert lost.sum() >= 4, "a random Breakout player loses several lives in 600 steps"
    t, n = np.nonzero(lost[:-1])
    assert life["episode_step"][t + 1, n].all() and not life["is_init"][t + 1, n].any()  # and plays on


def test_fire_is_pressed_at_the_start_only_in_games_that_wait_for_it():
    noop = np.full((400, 2), BREAKOUT.actions.index(0))  # a policy that never presses FIRE
    stalled = _play(BREAKOUT, noop, episodic_life=True)
    served = _play(BREAKOUT, noop, episodic_life=True, fire_reset=True)
    assert not stalled["terminated"].any()  # the ball is never served: no life is ever lost
    forced = served["episode_step"] & ~served["acted"]
    assert forced.sum(0).tolist() == [1, 1]  # one forced FIRE per env: at the episode's first agent step
    first = served["episode_step"].argmax(0)
    assert forced[first, [0, 1]].all()
    # served once; not after the lost life, so each env loses exactly one life and then waits
    assert served["terminated"].sum(0).tolist() == [1, 1]

    pong = AtariTask(game="Pong")
    assert not pong.needs_fire
    played = _play(pong, np.full((50, 2), pong.actions.index(0)), fire_reset=True)
    assert np.array_equal(played["acted"], played["episode_step"])  # nothing is forced
    assert learning_signals(pong, PPOConfig())["fire_reset"] is False
    assert learning_signals(BREAKOUT, PPOConfig())["fire_reset"] is True
    assert learning_signals(BREAKOUT, PPOConfig(fire_reset=False, episodic_life=False)) == {
        "episodic_life": False, "fire_reset": False, "clip_rewards": True,
        "value_loss": "0.5 x value_coef x squared error, clipped"}


@pytest.fixture(scope="module")
def breakout_experts(tmp_path_factory):
    """One Breakout network exported twice: trained (as its provenance says) with and without the signals."""
    root = tmp_path_factory.mktemp("signals")
    model = BREAKOUT.make_network(seed=5)
    protocol = Protocol(max_episode_frames=2000, noop_max=8)
    paths = []
    for on in (True, False):
        config = PPOConfig(episodic_life=on, fire_reset=on)
        paths.append(save_expert(root / f"signals_{on}", module=model.logits_module(), game="Breakout",
                                 view=BREAKOUT.view_spec, actions=BREAKOUT.actions, protocol=protocol,
                                 provenance={"trainer": "scaleworld.experts.ppo",
                                             "learning_signals": learning_signals(BREAKOUT, config)}))
    return protocol, paths


def test_datasets_and_scores_follow_the_protocol_whatever_the_expert_learned_with(breakout_experts, tmp_path):
    protocol, (with_signals, without) = breakout_experts
    rows = []
    for i, path in enumerate((with_signals, without)):
        policy = make_policy(str(path), seed=1)
        collect_dataset(game="Breakout", policy=policy, policy_identity=policy.identity, steps=800,
                        out=tmp_path / f"ds{i}", protocol=protocol, seed=1, num_envs=2, progress=False)
        rows.append(OfflineDataset.open(tmp_path / f"ds{i}").data)
    a, b = rows
    for key in ("pixels", "action", "episode", ("next", "reward"), ("next", "terminated"), ("next", "life_loss")):
        assert torch.equal(a[key], b[key]), key
    # lost lives are rows inside episodes, not their ends: the protocol's whole episodes
    life_loss = a["next", "life_loss"]
    assert life_loss.any() and not (life_loss & a["next", "done"]).any()
    inside = torch.nonzero(life_loss[:-1])[:, 0]
    assert torch.equal(a["episode"][inside + 1], a["episode"][inside])
    scores = [score_expert(p, episodes=2, num_envs=2, seed=3, out=tmp_path / f"s{i}.json")
              for i, p in enumerate((with_signals, without))]
    assert scores[0]["returns"] == scores[1]["returns"] and scores[0]["protocol"] == protocol.to_dict()


def _record(mean: float, sem: float, protocol: Protocol, game: str = "Pong") -> dict:
    return {"game": game, "mean": mean, "sem": sem, "episodes": 2, "protocol": protocol.to_dict(),
            "policy": {"kind": "expert"}}


def test_an_expert_within_noise_of_random_is_refused_as_upper_anchor():
    protocol = Protocol(max_episode_frames=400, noop_max=8)
    anchors = dict(game="Pong", protocol=protocol, episodes=2, seed=0, num_envs=2)
    random_score = measure_anchors(**anchors, upper="human")["random"]
    noisy = _record(random_score["score"] + 0.5, 1.0, protocol)  # half a point above random, SEM 1
    with pytest.raises(ScaleworldError, match=r"^Pong: the expert's score .* is within noise of the random "
                                              r"policy's .*standard errors, at most 2\).*control.upper_anchor=human"):
        measure_anchors(**anchors, upper="expert", expert_record=noisy)
    record = measure_anchors(**anchors, upper="human", expert_record=noisy)  # recorded, not used
    assert record["upper"]["kind"] == "human" and record["expert"]["margin_se"] < EXPERT_MARGIN_SE
    strong = measure_anchors(**anchors, upper="expert", expert_record=_record(15.0, 1.0, protocol))
    quality = strong["expert"]
    assert quality["margin_se"] > EXPERT_MARGIN_SE and strong["upper"]["score"] == 15.0
    assert (quality["human"], quality["ppo_reference"]) == (14.6, 20.3)
    assert quality["reference_share"] == pytest.approx((15.0 - quality["random"]) / (20.3 - quality["random"]))


def test_expert_quality_arithmetic():
    protocol = Protocol()
    q = expert_quality(_record(10.0, 3.0, protocol, "Boxing"), _record(2.0, 4.0, protocol, "Boxing"))
    assert q["margin_se"] == pytest.approx(8.0 / 5.0)  # sqrt(3^2 + 4^2) = 5
    assert q["reference_share"] == pytest.approx(8.0 / (92.1 - 2.0))
    assert expert_quality(_record(3.0, 0.0, protocol), _record(1.0, 0.0, protocol))["margin_se"] == float("inf")
    assert expert_quality(_record(1.0, 0.0, protocol), _record(1.0, 0.0, protocol))["margin_se"] == 0.0


def test_budgets_take_exactly_one_unit():
    assert budget_steps(agent_steps=1000, frames=None, frame_skip=4) == 1000
    assert budget_steps(agent_steps=None, frames=4000, frame_skip=4) == 1000
    assert budget_steps(agent_steps=None, frames=None, frame_skip=4, default=7) == 7
    with pytest.raises(ScaleworldError, match="both"):
        budget_steps(agent_steps=1000, frames=4000, frame_skip=4)
    with pytest.raises(ScaleworldError, match="not a positive whole number of agent steps at frame skip 4"):
        budget_steps(agent_steps=None, frames=4001, frame_skip=4)


"""Imagination: the TorchRL env and the fast path, and the actor-critic on hand-built world models."""

import dataclasses

import pytest
import torch
from torchrl.collectors import Collector
from torchrl.envs.utils import check_env_specs
from torchrl.objectives import SoftUpdate

from scaleworld.errors import ScaleworldError
from scaleworld.imagination.config import policy_train_config
from scaleworld.imagination.core import Imagination, StartContexts
from scaleworld.imagination.env import ImaginationEnv
from scaleworld.imagination.train import train_in_imagination
from scaleworld.models.agent import MASKED, ActorCritic, ActorPolicy, AgentConfig
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.dynamics_config import DynamicsConfig
from scaleworld.models.policy_config import PolicyConfig
from scaleworld.objectives.actor_critic import ActorCriticLoss
from tests.handbuilt import FIRE, PAY, RIGHT, action_reward_model, start_contexts, two_step_model


def _random_world(*, games=(), seed=0) -> DynamicsModel:
    """A random model: its termination logit is ~0, so about half of all steps terminate."""
    torch.manual_seed(seed)
    return DynamicsModel(DynamicsConfig(width=32, depth=2, heads=2, context=8, groups=8, classes=16,
                                        games=games)).eval()


def _starts(*, rows=40, steps=3, game=None, mask=None) -> StartContexts:
    """Full windows, and the short ones of two episodes' first frames (at rows 0 and 20)."""
    g = torch.Generator().manual_seed(1)
    short = torch.arange(steps - 1)
    return StartContexts(tokens=torch.randint(0, 16, (rows, 8), generator=g, dtype=torch.uint8),
                         actions=torch.randint(0, 18, (rows,), generator=g),
                         starts=torch.cat([torch.arange(rows - steps + 1), torch.zeros_like(short), short * 0 + 20]),
                         history=torch.cat([torch.full((rows - steps + 1,), steps - 1), short, short]),
                         steps=steps, game=game,
                         action_mask=torch.ones(18, dtype=torch.bool) if mask is None else mask)


def _imagination(batch=16, seed=3, **kwargs) -> Imagination:
    return Imagination(_random_world(), _starts(**kwargs), batch=batch, generator=torch.Generator().manual_seed(seed))


def _policy(model: DynamicsModel, seed: int) -> ActorPolicy:
    torch.manual_seed(11)
    c = model.config
    agent = ActorCritic(AgentConfig(groups=c.groups, classes=c.classes, hidden_size=c.width, units=16, layers=1))
    return ActorPolicy(agent, generator=torch.Generator().manual_seed(seed))


def test_a_restart_from_an_episode_start_has_only_the_history_before_it():
    # windows with 2, 1 and 0 real tokens before their first frame (steps=3); the padding must not count
    model = _random_world()
    starts = dataclasses.replace(_starts(steps=3), starts=torch.tensor([5, 9, 20]), history=torch.tensor([2, 1, 0]))
    tokens, actions, history = starts.windows(torch.arange(3))
    assert history.tolist() == [2, 1, 0]
    assert [tokens[r, -1].tolist() for r in range(3)] == [starts.tokens[i].long().tolist() for i in (7, 10, 20)]
    assert torch.equal(tokens[2], starts.tokens[20].long().expand(3, -1))  # left-padded with its first row
    im = Imagination(model, starts, batch=3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latent, hidden = im.restart(torch.arange(3), picks=torch.arange(3))
        for row, (first, n) in enumerate([(5, 2), (9, 1)]):
            alone = model(starts.tokens[first : first + n][None].long(), starts.actions[first : first + n][None])
            torch.testing.assert_close(hidden[row], alone["hidden"][0, -1], rtol=1e-5, atol=1e-5)
    assert torch.equal(hidden[2], torch.zeros_like(hidden[2]))  # an episode's first frame: h = 0, as in the real game
    assert torch.equal(latent, tokens[:, -1])


def test_start_windows_refuse_a_history_longer_than_their_steps():
    starts = _starts(steps=3)
    with pytest.raises(ValueError, match="history must be one length in \\[0, steps - 1 = 1\\]"):
        dataclasses.replace(starts, steps=2)  # the 2-token histories no longer fit
    with pytest.raises(ValueError, match="per start window"):
        dataclasses.replace(starts, history=starts.history[:1])


def test_the_torchrl_env_passes_check_env_specs():
    check_env_specs(ImaginationEnv(_imagination()))


def test_env_rollout_and_fast_path_give_the_same_trajectories_through_terminations():
    horizon = 12
    env = ImaginationEnv(_imagination(seed=3))
    wrapped = env.rollout(horizon, policy=_policy(env.imagination.model, 5), break_when_any_done=False)
    fast_imagination = _imagination(seed=3)
    fast = fast_imagination.rollout(_policy(fast_imagination.model, 5), horizon)
    terminated = fast["next", "terminated"]
    assert 0.2 < terminated.float().mean() < 0.8  # many rollouts end and restart mid-batch
    assert wrapped.batch_size == fast.batch_size == torch.Size([16, horizon])
    for key in ("latent", "hidden", "action", "action_mask", ("next", "latent"), ("next", "hidden"),
                ("next", "reward"), ("next", "terminated"), ("next", "done")):
        torch.testing.assert_close(wrapped[key], fast[key], rtol=0, atol=0, msg=str(key))
    # after a termination the rollout restarts from a real context: its next observation is not its last one
    b, t = terminated[..., 0][:, :-1].nonzero()[0].tolist()
    assert not torch.equal(fast["latent"][b, t + 1], fast["next", "latent"][b, t])


def test_one_termination_does_not_stop_the_batch_and_restarts_only_its_row():
    imagination = _imagination(batch=8)
    imagination.reset()
    others_before = imagination.cache.start.clone()
    rows = torch.zeros(8, dtype=torch.bool)
    rows[2] = True
    imagination.step(torch.zeros(8, dtype=torch.int64))
    imagination.reset(rows)
    position = imagination.cache.position
    assert position - 2 <= imagination.cache.start[2] <= position  # a history of up to 2 tokens just before
    assert imagination.cache.start[2] > others_before[2]
    assert torch.equal(imagination.cache.start[~rows], others_before[~rows])


def test_a_torchrl_collector_runs_on_the_env():
    env = ImaginationEnv(_imagination(batch=4))
    collector = Collector(env, _policy(env.imagination.model, 0), frames_per_batch=4 * 5, total_frames=40,
                          auto_register_policy_transforms=False)
    batches = [b for b in collector]
    collector.shutdown()
    assert [b.batch_size for b in batches] == [torch.Size([4, 5])] * 2
    assert batches[0]["next", "reward"].dtype == torch.float32


def test_a_joint_model_needs_start_contexts_that_name_their_game():
    with pytest.raises(ScaleworldError, match="joint mode"):
        Imagination(_random_world(games=("Pong", "Breakout")), _starts(), batch=2, generator=torch.Generator())


def test_the_policy_never_takes_an_illegal_action():
    mask = torch.zeros(18, dtype=torch.bool)
    mask[[0, 4, 7]] = True
    imagination = _imagination(mask=mask)
    td = imagination.rollout(_policy(imagination.model, 1), 6)
    assert set(td["action"].unique().tolist()) <= {0, 4, 7}
    assert (td["logits"][..., ~mask] == MASKED).all()


def _train(model, steps):
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        agent, final = train_in_imagination(
            model, start_contexts(), config=PolicyConfig(horizon=8, context_steps=2, units=64, layers=1, gamma=0.9),
            train=policy_train_config(steps=steps, batch_size=128, lr=1e-3, eval_every=steps, checkpoint_every=steps),
            out=out, progress=False)
    imagination = Imagination(model, start_contexts(), batch=256, generator=torch.Generator().manual_seed(5))
    return imagination.rollout(ActorPolicy(agent, greedy=True), 8), final


def test_actor_critic_learns_the_rewarded_action_when_reward_depends_only_on_the_action():
    td, final = _train(action_reward_model(), 150)
    assert (td["action"] == RIGHT).float().mean() > 0.95
    assert td["next", "reward"].mean() > 0.95 * PAY


def test_actor_critic_learns_a_two_step_plan_for_a_delayed_reward():
    td, _ = _train(two_step_model(), 300)
    armed = td["latent"][..., 0] == 1
    later = torch.arange(8) > 0  # the first step's state comes from the (inconsistent) start context
    assert (td["action"][armed] == RIGHT).float().mean() > 0.95
    assert (td["action"][~armed & later] == FIRE).float().mean() > 0.95
    # alternating FIRE, RIGHT pays every second step; a myopic policy (never FIRE) earns nothing
    assert td["next", "reward"].mean() > 0.4 * PAY


def test_a_loss_checkpoint_and_a_policy_file_of_the_earlier_layout_still_load():
    """Before the loss used TorchRL's target parameters and PercentileValueNorm, the slow critic was the
    agent's ``target_critic`` and the return percentiles flat buffers: runs in progress still resume."""
    config = AgentConfig(groups=4, classes=4, hidden_size=8, units=8, layers=1)
    torch.manual_seed(0)
    loss = ActorCriticLoss(ActorCritic(config))
    SoftUpdate(loss, tau=0.02)  # the updater a training loop pairs with the loss (else TorchRL warns)
    with torch.no_grad():
        for value in loss.target_critic_network_params.values(True, True):
            value.add_(torch.randn_like(value))  # a slow critic that is not the critic
        loss.retnorm.low.fill_(-2.0)
        loss.retnorm.high.fill_(3.5)
    state = loss.state_dict()
    earlier = {}
    for key, value in state.items():
        if key.startswith("target_critic_network_params.module.critic."):
            earlier["agent.target_critic." + key.removeprefix("target_critic_network_params.module.critic.")] = value
        elif key.startswith("retnorm."):
            earlier["return_" + key.removeprefix("retnorm.")] = value.reshape(())
        elif not key.startswith(("critic_network_params.", "_value_estimator.")):
            earlier[key] = value
    torch.manual_seed(1)
    resumed = ActorCriticLoss(ActorCritic(config))
    SoftUpdate(resumed, tau=0.02)
    resumed.load_state_dict(earlier)
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in state.items())
    assert resumed.target_behind  # its slow critic moved at the next step's start: the trainer catches it up
    resumed.load_state_dict(state)
    assert not resumed.target_behind
    policy_file = {**loss.agent.state_dict(), **{k.replace("agent.", "", 1): v for k, v in earlier.items()
                                                 if k.startswith("agent.target_critic.")}}
    agent = ActorCritic(config)
    agent.load_state_dict(policy_file)  # the slow copy is dropped
    assert all(torch.equal(agent.state_dict()[k], v) for k, v in loss.agent.state_dict().items())


def test_the_return_scale_takes_the_first_batch_exactly_then_moves_at_its_rate():
    """The return normaliser's first update takes that batch's percentiles (weight 1, chosen on the
    device: no host read of `return_seen`), later ones lerp at 1 - return_decay."""
    from scaleworld.models.agent import ActorCritic, AgentConfig
    from scaleworld.objectives.actor_critic import ActorCriticLoss

    loss = ActorCriticLoss(ActorCritic(AgentConfig(groups=4, classes=4, hidden_size=8)), return_decay=0.99)
    gen = torch.Generator().manual_seed(0)
    first, second = torch.randn(64, 5, generator=gen) * 10, torch.randn(64, 5, generator=gen)
    q = torch.tensor([0.05, 0.95])
    loss._return_scale(first)
    low, high = torch.quantile(first.reshape(-1, 1), q, dim=0)
    assert torch.equal(loss.retnorm.low, low) and torch.equal(loss.retnorm.high, high)
    assert isinstance(loss.retnorm.rate, float) and loss.retnorm.rate == pytest.approx(0.01)
    loss._return_scale(second)
    low2, high2 = torch.quantile(second.reshape(-1, 1), q, dim=0)
    torch.testing.assert_close(loss.retnorm.low, torch.lerp(low, low2, 0.01))
    torch.testing.assert_close(loss.retnorm.high, torch.lerp(high, high2, 0.01))


def test_an_imagination_sized_for_its_horizon_rolls_out_what_a_whole_window_cache_does():
    """With `horizon` the KV cache keeps context_steps - 1 + horizon slots a row, not the model's whole
    window: every token a row can attend to in a rollout, through restarts (half the steps end here),
    so the rollouts are those of the full cache, for the same generator seeds; a longer one is refused."""
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsConfig(width=32, depth=2, heads=2, context=16, groups=8, classes=16)).eval()
    rollouts = []
    for horizon in (None, 5):
        im = Imagination(model, _starts(steps=3), batch=16, generator=torch.Generator().manual_seed(3), horizon=horizon)
        rollouts.append(im.rollout(_policy(model, seed=4), 5))
        if horizon is not None:
            assert im.cache.k.shape[3] == 3 - 1 + 5 < model.config.context
            with pytest.raises(ScaleworldError, match="a rollout of 6 steps from an imagination made for 5"):
                im.rollout(_policy(model, seed=4), 6)
    full, live = rollouts
    assert full["next", "terminated"].any() and full["next", "terminated"].float().mean() < 1  # restarts happened
    assert torch.equal(full["next", "latent"], live["next", "latent"])
    assert torch.equal(full["action"], live["action"])
    torch.testing.assert_close(full["next", "hidden"], live["next", "hidden"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full["next", "reward"], live["next", "reward"], rtol=1e-5, atol=1e-6)

"""scaleworld's parts in a plain TorchRL pipeline, written as a TorchRL user would: only the public
API (`import scaleworld`) and TorchRL's own samplers, actors, collectors and losses."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import ReplayBuffer, TensorStorage
from torchrl.data.replay_buffers.samplers import SliceSampler
from torchrl.modules import OneHotCategorical, ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss, SoftUpdate, ValueEstimators
from torchrl.objectives.value import GAE, TDLambdaEstimator

import scaleworld

SMALL = dict(width=64, depth=2, heads=4, context=16)


def test_torchrl_slices_of_a_dataset_train_the_world_model_in_a_plain_loop(breakout_tokens):
    ds = scaleworld.OfflineDataset.open(breakout_tokens)
    # TorchRL's own sampler straight over the rows: windows inside one episode, no mask at all
    plain = ReplayBuffer(storage=TensorStorage(ds.data), batch_size=8 * 16,
                         sampler=SliceSampler(slice_len=16, traj_key="episode"))
    batch = plain.sample().reshape(8, 16)
    assert (batch["episode"] == batch["episode"][:, :1]).all()  # never across an episode
    # the one-call buffer pads and masks episodes shorter than the window (TorchRL's pad_output)
    windows = ds.window_buffer(slice_len=70, batch_size=16).sample()
    shortest = int(ds.episode_lengths.min())
    assert windows.batch_size == (16, 70) and windows["mask"].sum(-1).min() >= shortest
    assert (windows["episode"] == windows["episode"][:, :1]).all()

    torch.manual_seed(0)
    model = scaleworld.DynamicsModel(scaleworld.DynamicsConfig(**SMALL))
    loss_fn = scaleworld.DynamicsLoss(model)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=3e-3)
    first = last = None
    for _ in range(60):
        td = plain.sample().reshape(8, 16)
        assert td["next", "reward"].shape == (8, 16, 1)  # TorchRL's shapes, as the loss reads them
        loss = sum(v for k, v in loss_fn(td).items() if k.startswith("loss_"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
        last = loss.item()
    assert last < 0.7 * first  # it learns the game's tokens (measured: 157 -> 50 nats)


@pytest.fixture(scope="module")
def dynamics_run(tmp_path_factory, breakout_tokens):
    out = tmp_path_factory.mktemp("wm") / "run"
    scaleworld.train_dynamics(token_dirs=[breakout_tokens], out=out, model=scaleworld.DynamicsConfig(**SMALL),
                              train=scaleworld.TrainConfig(steps=20, batch_size=8, lr=3e-3, warmup_steps=5),
                              progress=False)
    return out


@pytest.mark.parametrize("encoding", ["categorical", "one_hot"])
def test_an_imagination_env_in_a_collector_with_a_probabilistic_actor_feeds_torchrl_ppo(dynamics_run,
                                                                                      breakout_tokens, encoding):
    env = scaleworld.ImaginationEnv.from_run(dynamics_run, breakout_tokens, batch=4, seed=0,
                                             action_encoding=encoding)
    width = 64
    logits = TensorDictModule(nn.Linear(width, 18), in_keys=["hidden"], out_keys=["logits"])
    distribution = torch.distributions.Categorical if encoding == "categorical" else OneHotCategorical
    actor = ProbabilisticActor(logits, in_keys=["logits"], distribution_class=distribution, spec=env.action_spec,
                               return_log_prob=True)
    critic = ValueOperator(nn.Linear(width, 1), in_keys=["hidden"])
    collector = Collector(env, actor, frames_per_batch=4 * 8, total_frames=4 * 8 * 2)
    legal = set(torch.tensor(scaleworld.get_game("Breakout").action_mask()).nonzero().flatten().tolist())
    batches = 0
    for data in collector:
        batches += 1
        assert data.batch_size == (4, 8)
        chosen = data["action"] if encoding == "categorical" else data["action"].argmax(-1)
        assert set(chosen.flatten().tolist()) <= set(range(18))
        assert data["next", "reward"].shape == (4, 8, 1)
        GAE(gamma=0.99, lmbda=0.95, value_network=critic)(data)
        loss = ClipPPOLoss(actor, critic)(data)
        total = loss["loss_objective"] + loss["loss_critic"] + loss["loss_entropy"]
        total.backward()
        assert torch.isfinite(total) and logits.module.weight.grad.abs().sum() > 0
    collector.shutdown()
    assert batches == 2
    # the env's own random policy draws the game's legal actions only
    random = env.rollout(20, break_when_any_done=False)["action"]
    drawn = random.flatten().tolist() if encoding == "categorical" else random.argmax(-1).flatten().tolist()
    assert set(drawn) <= legal


def test_an_imagination_env_starts_from_replay_buffer_windows_and_steps_from_the_frame_in_the_tensordict(
        dynamics_run, breakout_tokens, frozen_tokenizer):
    ds = scaleworld.OfflineDataset.open(breakout_tokens)
    windows = ds.window_buffer(slice_len=5, batch_size=4).sample()  # [4, 5]: tokens, action, mask (short episodes)
    env = scaleworld.ImaginationEnv.from_run(dynamics_run, breakout_tokens, batch=4, seed=1,
                                             tokenizer_dir=frozen_tokenizer)
    td = env.reset(TensorDict({"context": windows.select("tokens", "action", "mask")}, batch_size=[4]))
    last = windows["mask"].sum(-1) - 1  # the last real step of each window is the first observation
    assert torch.equal(td["latent"], windows["tokens"][torch.arange(4), last].long()) and td["is_init"].all()
    model, _ = scaleworld.load_dynamics(dynamics_run)
    for row in range(4):  # the hidden state summarises the window's real steps before it, as the model reads them
        n = int(last[row])
        alone = model(windows["tokens"][row, :n][None].long(), windows["action"][row, :n][None])["hidden"][0, -1] if n \
            else torch.zeros(64)
        torch.testing.assert_close(td["hidden"][row], alone, rtol=1e-4, atol=1e-4)
    tokenizer, _ = scaleworld.load_tokenizer(frozen_tokenizer)
    assert torch.equal(td["pixels"], tokenizer.decode(td["latent"]))  # decoded frames, with a tokenizer

    # an edited frame is the frame the model steps from: as if the window had ended with it
    edited = td["latent"].clone()
    edited[:, :4] = 0
    td["latent"] = edited
    td["action"] = torch.tensor([1, 0, 3, 4])
    out = env.step(td)["next"]
    tokens = windows["tokens"].clone()
    tokens[torch.arange(4), last] = edited.to(tokens.dtype)
    twin = scaleworld.ImaginationEnv.from_run(dynamics_run, breakout_tokens, batch=4, seed=1)  # the same draws
    context = {"tokens": tokens, "action": windows["action"], "mask": windows["mask"]}
    expected = twin.reset(TensorDict({"context": context}, batch_size=[4]))
    expected["action"] = td["action"]
    twin_out = twin.step(expected)["next"]
    assert torch.equal(out["latent"], twin_out["latent"]) and torch.equal(out["reward"], twin_out["reward"])
    # a tensordict of an earlier step no longer describes the rows' histories: refused, not silently continued
    with pytest.raises(scaleworld.ScaleworldError, match=r"rows \[0, 1, 2, 3\] of the tensordict continue histories"):
        env.step(td)


def test_the_actor_critic_loss_runs_on_torchrls_value_estimator_and_target_network_updates(dynamics_run,
                                                                                          breakout_tokens):
    env = scaleworld.ImaginationEnv.from_run(dynamics_run, breakout_tokens, batch=8, seed=2)
    data = env.rollout(6, break_when_any_done=False)  # random legal actions
    torch.manual_seed(0)
    agent = scaleworld.ActorCritic(scaleworld.AgentConfig(groups=32, classes=32, hidden_size=64, units=16, layers=1))
    loss = scaleworld.ActorCriticLoss(agent, gamma=0.9, lmbda=0.8)
    updater = SoftUpdate(loss, tau=0.25)  # TorchRL's target-network utility finds the slow critic
    with pytest.raises(NotImplementedError, match="TD\\(lambda\\)"):
        loss.make_value_estimator(ValueEstimators.GAE)
    loss.make_value_estimator(ValueEstimators.TDLambda, gamma=0.5, lmbda=0.8)  # TorchRL's hook: a new estimator
    assert isinstance(loss.value_estimator, TDLambdaEstimator) and float(loss.value_estimator.gamma) == 0.5
    # the critic starts at exactly 0, so the returns are the rewards' TD(lambda) sums: checked by hand
    reward, done = data["next", "reward"][..., 0], data["next", "done"][..., 0]
    expected, following = torch.zeros_like(reward), torch.zeros(8)
    for t in reversed(range(6)):
        following = reward[:, t] + 0.5 * ~done[:, t] * 0.8 * following
        expected[:, t] = following
    torch.testing.assert_close(loss.lambda_returns(data), expected)

    out = loss(data)
    assert set(out.keys()) == set(loss.out_keys)
    before = loss.target_critic_network_params.clone()
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.1)
    (out["loss_actor"] + out["loss_critic"] + out["loss_entropy"]).backward()
    optimizer.step()
    updater.step()
    online = loss.critic_network_params
    assert (online["module", "critic", "3", "weight"] != 0).any()  # the critic learnt
    for key, value in loss.target_critic_network_params.items(True, True):
        torch.testing.assert_close(value, before[key].lerp(online[key].detach(), 0.25))


def test_an_imagination_env_refuses_actions_it_cannot_take(dynamics_run, breakout_tokens):
    env = scaleworld.ImaginationEnv.from_run(dynamics_run, breakout_tokens, batch=2)
    td = env.reset()
    for action, message in ((torch.tensor([0.0, 1.0]), "dtype torch.float32"),
                            (torch.tensor([0, 18]), "outside the 18 actions"),
                            (torch.zeros(2, 18, dtype=torch.int64), "exactly one 1 per row"),
                            (torch.zeros(2, 3, dtype=torch.int64), "of shape \\[2, 3\\]")):
        td["action"] = action
        with pytest.raises(scaleworld.ScaleworldError, match=message):
            env.step(td)
    with pytest.raises(scaleworld.ScaleworldError, match="action_encoding='binary'"):
        scaleworld.ImaginationEnv.from_run(dynamics_run, breakout_tokens, batch=2, action_encoding="binary")
    td["action"] = torch.tensor([0, 1])
    td["latent"] = td["latent"].float()
    with pytest.raises(scaleworld.ScaleworldError, match="'latent' must be integer codes"):
        env.step(td)
    with pytest.raises(scaleworld.ScaleworldError, match="has no 'history'"):
        env.step(td.exclude("history"))


@pytest.mark.parametrize("context, message", [
    ({"tokens": torch.zeros(2, 3, 5, dtype=torch.long), "action": torch.zeros(2, 3, dtype=torch.long)},
     r"\('context', 'tokens'\) \[2, C, 32\]"),
    ({"tokens": torch.zeros(2, 3, 32, dtype=torch.long), "action": torch.zeros(2, 3, dtype=torch.long),
      "mask": torch.tensor([[True, False, True], [True, True, True]])}, "a non-empty prefix of real steps"),
    ({"tokens": torch.zeros(2, 40, 32, dtype=torch.long), "action": torch.zeros(2, 40, dtype=torch.long)},
     "exceeds the model's context"),
    ({"tokens": torch.full((2, 3, 32), 40), "action": torch.zeros(2, 3, dtype=torch.long)}, "a token outside"),
])
def test_an_imagination_env_refuses_a_reset_context_it_cannot_start_from(dynamics_run, breakout_tokens, context,
                                                                         message):
    env = scaleworld.ImaginationEnv.from_run(dynamics_run, breakout_tokens, batch=2)
    with pytest.raises(scaleworld.ScaleworldError, match=message):
        env.reset(TensorDict({"context": TensorDict(context, batch_size=[2])}, batch_size=[2]))


def test_the_atari_env_gives_a_collectors_random_policy_legal_actions_only():
    env = scaleworld.make_torchrl_env("Pong", protocol=scaleworld.Protocol(noop_max=0))
    legal = set(torch.tensor(scaleworld.get_game("Pong").action_mask()).nonzero().flatten().tolist())
    collector = Collector(env, None, frames_per_batch=64, total_frames=64)  # None: the spec's rand()
    (data,) = list(collector)
    collector.shutdown()
    assert data["action_mask"].all(0).tolist() == [i in legal for i in range(18)]
    assert set(data["action"].tolist()) <= legal and len(set(data["action"].tolist())) > 1


class TinyCNN(nn.Module):
    """A user's own network over the expert view (4 stacked 64x64 luma frames) -> logits of Pong's 6 actions."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(4, 8, 8, stride=8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 6))

    def forward(self, view):
        return self.net(view.float() / 255.0)


def test_an_expert_acts_in_the_torchrl_atari_env_through_a_collector_as_in_scaleworlds_collection(tmp_path):
    pong = scaleworld.get_game("Pong")
    scaleworld.save_expert(tmp_path / "expert", module=TinyCNN(), game="Pong", view=scaleworld.ViewSpec(),
                           actions=pong.legal_actions)
    protocol = scaleworld.Protocol(noop_max=0, max_episode_frames=400)
    env = scaleworld.make_torchrl_env("Pong", protocol=protocol)
    expert = scaleworld.load_expert(tmp_path / "expert", seed=3)
    # the frame history is the expert's state, in the tensordict; the Collector adds its primer
    collector = Collector(env, expert, frames_per_batch=60, total_frames=60, auto_register_policy_transforms=True)
    expert.generator.manual_seed(3)  # the Collector ran the policy once when built, to learn its outputs
    (data,) = list(collector)
    collector.shutdown()
    assert data["next", "expert_view"].shape == (60, 4, 64, 64) and len(set(data["action"].tolist())) > 1
    assert torch.equal(data["next", "expert_view"][1:, :3], data["next", "expert_view"][:-1, 1:])  # frames shift in

    # the same expert (same seed) in scaleworld's own collection takes the same actions on the same frames
    again = scaleworld.load_expert(tmp_path / "expert", seed=3)
    scaleworld.collect_dataset(game="Pong", policy=again, policy_identity=again.identity, steps=60,
                               out=tmp_path / "data", protocol=protocol, num_envs=1, progress=False)
    rows = scaleworld.OfflineDataset.open(tmp_path / "data").data
    assert torch.equal(rows["pixels"], data["pixels"]) and torch.equal(rows["action"], data["action"])
    for key in ("is_init", ("next", "reward"), ("next", "done"), ("next", "life_loss")):
        assert torch.equal(torch.as_tensor(rows[key])[:-1], data[key][:-1]), key  # the same keys, dtypes, shapes
    assert rows["next", "truncated"][-1, 0] and not data["next", "truncated"][-1, 0]  # the dataset's budget cut


def test_a_policy_trained_in_imagination_plays_the_torchrl_atari_env_through_a_collector(
        tmp_path, dynamics_run, breakout_tokens, frozen_tokenizer):
    scaleworld.train_policy(dynamics_dir=dynamics_run, token_dir=breakout_tokens, out=tmp_path / "policy",
                            config=scaleworld.PolicyConfig(horizon=4, context_steps=2, units=16, layers=1),
                            train=scaleworld.TrainConfig(steps=2, batch_size=4, warmup_steps=1), progress=False)
    tokenizer, _ = scaleworld.load_tokenizer(frozen_tokenizer)
    model, _ = scaleworld.load_dynamics(dynamics_run)
    actor_critic, _ = scaleworld.load_policy(tmp_path / "policy")
    agent = scaleworld.WorldModelAgent(tokenizer=tokenizer, model=model, agent=actor_critic, game="Breakout",
                                       generator=torch.Generator().manual_seed(0))
    env = scaleworld.make_torchrl_env("Breakout", protocol=scaleworld.Protocol(max_episode_frames=100))
    collector = Collector(env, agent, frames_per_batch=40, total_frames=40, auto_register_policy_transforms=True)
    (data,) = list(collector)  # at most 25 agent steps an episode: later ones start empty histories
    collector.shutdown()
    assert set(data["action"].tolist()) <= set(scaleworld.get_game("Breakout").legal_actions)
    history, init = data["agent_history"], data["is_init"][:, 0]
    assert init.sum() >= 2 and (history[~init] == data["next", "agent_history"][:-1][~init[1:]]).all()
    with pytest.raises(scaleworld.ScaleworldError, match=r"rows \[0\] carry agent histories the agent has moved past"):
        agent(data[5].exclude("next"))  # a step of the past, not a new episode

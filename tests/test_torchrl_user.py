"""scaleworld's parts in a plain TorchRL pipeline, written as a TorchRL user would: only the public
API (`import scaleworld`) and TorchRL's own samplers, actors, collectors and losses."""

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import ReplayBuffer, TensorStorage
from torchrl.data.replay_buffers.samplers import SliceSampler
from torchrl.modules import OneHotCategorical, ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

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
    loss_fn = scaleworld.WorldModelLoss(model)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=3e-3)
    first = last = None
    for _ in range(60):
        td = plain.sample().reshape(8, 16)
        td["next", "reward"] = td["next", "reward"][..., None]  # TorchRL's [B, T, 1] is read as well
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


def test_the_atari_env_gives_a_collectors_random_policy_legal_actions_only():
    env = scaleworld.make_torchrl_env("Pong", protocol=scaleworld.Protocol(noop_max=0))
    legal = set(torch.tensor(scaleworld.get_game("Pong").action_mask()).nonzero().flatten().tolist())
    collector = Collector(env, None, frames_per_batch=64, total_frames=64)  # None: the spec's rand()
    (data,) = list(collector)
    collector.shutdown()
    assert data["action_mask"].all(0).tolist() == [i in legal for i in range(18)]
    assert set(data["action"].tolist()) <= legal and len(set(data["action"].tolist())) > 1

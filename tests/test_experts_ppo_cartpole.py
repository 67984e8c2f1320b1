"""PPO learns: on CartPole-v1, three seeds each reach a return threshold within 32k agent steps.

The settings are the small-task ones of RL Baselines3 Zoo (16 envs x 32 steps, 10 epochs of two
minibatches, lambda 0.8, no entropy bonus, its value loss: 0.5 x MSE, unclipped) with a higher step
size and gamma 0.99; separate actor and critic MLPs. With them every seed tried (0-4) ends above 340
(the maximum is 500); 195 is the classic "solved" level. About 15 s a seed on one CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest

from scaleworld.errors import ScaleworldError
from scaleworld.experts.ppo import PPOConfig, train_ppo
from scaleworld.experts.tasks import GymTask

CARTPOLE = dict(
    agent_steps=32_768, num_envs=16, rollout_steps=32, epochs=10, minibatches=2, learning_rate=2e-3, gamma=0.99,
    gae_lambda=0.8, clip_epsilon=0.2, entropy_coef=0.0, clip_rewards=False, checkpoint_every=1000,
    value_coef=1.0, clip_value_loss=False,  # SB3's value loss: 0.5 x MSE (its vf_coef 0.5 x MSE), unclipped
)
THRESHOLD = 195.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_learns_cartpole(tmp_path, seed):
    result = train_ppo(GymTask(env_id="CartPole-v1"), PPOConfig(seed=seed, **CARTPOLE), tmp_path, progress=False)
    assert result.finished and result.updates_done == result.total_updates == 64
    returns = result.episode_returns
    assert np.mean(returns[:20]) < 60  # it started from a near-random policy ...
    assert np.mean(returns[-10:]) >= THRESHOLD, returns[-10:]  # ... and learned to balance


def test_non_finite_loss_stops_naming_the_update(tmp_path):
    config = PPOConfig(**{**CARTPOLE, "learning_rate": 1e30, "agent_steps": 2048})
    with pytest.raises(ScaleworldError, match=r"^PPO (loss|gradient norm) is not finite \(\S+\) at update 0: "):
        train_ppo(GymTask(env_id="CartPole-v1"), config, tmp_path, progress=False)

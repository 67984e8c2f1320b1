"""The three environment factories produce the same observations for the same seed and actions."""

import numpy as np
import torch
from torchrl.envs.utils import check_env_specs, step_mdp

from scaleworld.atari.envs import AtariEnv, VectorAtari, make_torchrl_env
from scaleworld.atari.protocol import Protocol

SEED = 7
PROTOCOL = Protocol(max_episode_frames=600, noop_max=6)  # episodes end by game over or the cap


def _advance_until_ready(venv, state, index):
    while not state.ready[index]:
        state = venv.step(np.zeros(venv.num_envs, np.int64))
    return state


def test_gymnasium_torchrl_and_vector_envs_agree_across_episode_ends():
    index = 1  # emulator 1 of the vector env <-> env_index=1 of the single envs
    gym_env = AtariEnv("Breakout", protocol=PROTOCOL, env_index=index)
    rl_env = make_torchrl_env("Breakout", protocol=PROTOCOL, env_index=index)
    venv = VectorAtari("Breakout", 3, protocol=PROTOCOL)
    rng = np.random.default_rng(0)

    obs, _ = gym_env.reset(seed=SEED)
    td = rl_env.reset(seed=SEED)  # GymWrapper passes the seed to AtariEnv.reset
    state = _advance_until_ready(venv, venv.reset(seed=SEED), index)
    assert np.array_equal(td["pixels"].numpy(), obs["pixels"])
    assert np.array_equal(state.obs[index], obs["pixels"])

    episode_ends = compared = life_losses = 0
    for _ in range(700):
        action = int(rng.integers(0, 18))
        obs, reward, terminated, truncated, info = gym_env.step(action)
        td["action"] = torch.tensor(action)
        td = rl_env.step(td)
        actions = np.zeros(3, np.int64)
        actions[index] = action
        state = venv.step(actions)
        nxt = td["next"]
        assert state.acted[index]
        assert (nxt["reward"].item(), bool(nxt["terminated"]), bool(nxt["truncated"])) == (
            reward, terminated, truncated)
        assert (state.reward[index], state.terminated[index], state.truncated[index]) == (
            reward, terminated, truncated)
        assert bool(nxt["life_loss"]) == info["life_loss"] == state.life_loss[index]
        life_losses += info["life_loss"]
        if terminated or truncated:
            # ALE's vector env returns a stale frame on the step that ends an episode; that
            # frame is never stored or acted on, so only the following reset is compared.
            episode_ends += 1
            obs, _ = gym_env.reset()
            td = rl_env.reset()
            state = _advance_until_ready(venv, state, index)
        else:
            td = step_mdp(td)
            compared += 1
        assert np.array_equal(td["pixels"].numpy(), obs["pixels"])
        assert np.array_equal(state.obs[index], obs["pixels"])
    assert episode_ends >= 3 and compared > 500 and life_losses > 0


def test_torchrl_env_passes_check_env_specs():
    env = make_torchrl_env("Pong", protocol=Protocol(noop_max=0))
    check_env_specs(env, seed=0)


def test_frame_cap_and_vector_protocol_options():
    # 400 frames / 4 = 100 agent steps; no no-ops, so every episode is at most 100 agent steps
    venv = VectorAtari("Pong", 2, protocol=Protocol(max_episode_frames=400, noop_max=0))
    state = venv.reset(seed=0)
    assert state.ready.all()
    steps = np.zeros(2, int)
    ends = []
    for _ in range(230):
        state = venv.step(np.full(2, 3))
        steps += state.acted
        for i in np.flatnonzero(state.truncated):
            ends.append(int(steps[i]))
            steps[i] = 0
        assert not state.terminated.any()  # Pong does not end in 100 steps
    assert ends == [100, 100, 100, 100]


def test_breakout_records_life_losses_and_episode_end_without_life_termination():
    # Breakout has 5 lives: an episode ends only at the last; the other 4 are life_loss steps.
    env = AtariEnv("Breakout", protocol=Protocol(noop_max=0))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    losses, terminated = 0, False
    while not terminated:
        _, _, terminated, truncated, info = env.step(int(rng.choice([0, 1, 3, 4])))
        losses += info["life_loss"]
        assert not truncated
    assert losses == 4


def test_vector_env_flags_the_first_observation_of_each_episode():
    venv = VectorAtari("Pong", 2, protocol=Protocol(max_episode_frames=200, noop_max=3))
    state = venv.reset(seed=0)
    firsts = ready_steps = 0
    seen_first = state.first.copy()
    for _ in range(200):
        assert not (state.first & ~state.ready).any()
        state = venv.step(np.zeros(2, np.int64))
        ready_steps += state.ready.sum()
        firsts += state.first.sum()
        seen_first |= state.first
    # 200 frames = 50 agent steps per episode including up to 3 no-ops: ~4 episodes per emulator
    assert seen_first.all() and 6 <= firsts <= 10 and ready_steps > 300

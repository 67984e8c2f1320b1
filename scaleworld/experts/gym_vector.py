"""Any gymnasium env with discrete actions, stepped in lock-step like `VectorAtari`.

PPO's training environment (`train_env.MaskedVectorEnv`) takes a vector of emulators that
reports, for every step, which emulators took an agent step (`acted`) and which will on the next
one (`ready`): `scaleworld.atari.envs.VectorAtari` does, and `GymVector` gives a gymnasium
env (CartPole, for the tests) the same `VectorStep` contract, so one PPO trainer serves both.

gymnasium's vector envs reset an env on the step *after* its episode ends (``NextStep``
autoreset: that step ignores its action and returns the first observation of the new episode),
which is exactly the "resetting" step of `VectorAtari`; there are no no-op starts.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from scaleworld.atari.envs import VectorStep
from scaleworld.errors import ScaleworldError


class GymVector:
    """`num_envs` copies of gymnasium env `env_id` in a `SyncVectorEnv`, as `VectorStep`s.

    Observations are float32 [N, *obs_shape]. Env i of a reset with seed s is seeded s + i
    (gymnasium's rule), and later episodes continue each env's own seeded generator.
    """

    def __init__(self, env_id: str, num_envs: int, *, env_kwargs: dict[str, Any] | None = None):
        try:
            self._env = gymnasium.vector.SyncVectorEnv(
                [lambda: gymnasium.make(env_id, **(env_kwargs or {}))] * num_envs,
                autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP,
            )
        except gymnasium.error.Error as exc:
            raise ScaleworldError(f"cannot make gymnasium env {env_id!r} ({exc}): use a registered env id") from None
        space = self._env.single_action_space
        if not isinstance(space, gymnasium.spaces.Discrete) or space.start != 0:
            raise ScaleworldError(f"{env_id} has action space {space}: PPO here needs Discrete(n) actions")
        self.num_actions = int(space.n)
        self.observation_shape = tuple(self._env.single_observation_space.shape)
        self.num_envs = num_envs
        self._needs_reset = np.zeros(num_envs, bool)

    def reset(self, *, seed: int) -> VectorStep:
        obs, _ = self._env.reset(seed=seed)
        self._needs_reset[:] = False
        zeros = np.zeros(self.num_envs, bool)
        ones = np.ones(self.num_envs, bool)
        return VectorStep(
            obs=obs.astype(np.float32), reward=np.zeros(self.num_envs), terminated=zeros,
            truncated=zeros.copy(), life_loss=zeros.copy(), acted=zeros.copy(), ready=ones, first=ones.copy(),
        )

    def step(self, actions: np.ndarray) -> VectorStep:
        acted = ~self._needs_reset
        obs, reward, terminated, truncated, _ = self._env.step(np.asarray(actions, np.int64))
        terminated = acted & terminated.astype(bool)
        truncated = acted & truncated.astype(bool)
        resetting = self._needs_reset.copy()
        self._needs_reset = terminated | truncated
        return VectorStep(
            obs=obs.astype(np.float32),
            reward=np.where(acted, reward.astype(np.float64), 0.0),
            terminated=terminated,
            truncated=truncated,
            life_loss=np.zeros(self.num_envs, bool),
            acted=acted,
            ready=~self._needs_reset,
            first=resetting,
        )

    def close(self) -> None:
        self._env.close()

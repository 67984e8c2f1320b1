"""PPO's training environment: a TorchRL `EnvBase` over a lock-step vector of emulators.

Why not TorchRL's `SerialEnv`/`ParallelEnv` of `make_torchrl_env` envs: `VectorAtari` steps all
emulators in ALE's C++ threads and preprocesses the whole batch at once, several times faster
than Python-stepped envs (tools/bench_data.py). Its price is lock-step: an emulator whose episode
ended spends the next step resetting, then its no-op start steps, while the others act. TorchRL
has no notion of "this env skips a step", so `MaskedVectorEnv` makes every vector step a
transition of every env and marks the ones that were agent steps with ``("next", "acted")``; the
trainer computes GAE over the full [N, T] batch and then drops the other rows. That is exact:
such rows only ever follow a transition with ``done`` (GAE does not bootstrap across it) or
open the batch before the first agent step, so no kept advantage depends on them.

One approximation: on a step that ends an episode by truncation (the protocol's frame cap, once
per 27,000 agent steps at most) `VectorAtari` returns a stale frame, and GAE bootstraps the value
of that frame. Gymnasium envs return the true final observation.

Episode boundaries for TorchRL: the step that ends an episode has ``done``; the collector then
calls `reset` with a ``"_reset"`` mask, which here only clears the done flags (the emulator resets
itself on the following steps, as described above). Only a reset without a mask (the collector's
first) restarts the emulators, seeded from the env seed and a reset counter.

Learning-only signals (PPOConfig.episodic_life, .fire_reset; both standard for Atari PPO). They
change what the learner sees, never the emulators' episodes, so logs, stored data and scores
(which never use this env) keep the protocol's whole episodes and raw rewards:

- episodic life: a step that loses a life without ending the game has ``terminated`` (and
  ``done``), so GAE neither bootstraps across it nor carries advantages over it; the collector's
  partial reset only clears the flags and the emulator plays on.
- FIRE at the start of each episode, in games that wait for it (the game table's `needs_fire`):
  the first agent step of an episode presses FIRE whatever the policy chose, and is not the
  policy's, so it has ``acted`` False and is dropped like a reset step (it follows one). Not
  after each lost life, as baselines' FireResetEnv does under episodic life: scaleworld's expert
  collects and is scored under the protocol, where nothing presses FIRE for it, so it has to
  learn to serve after a lost life (and a Breakout start looks like the start of a new life).

Keys (batch [N]): ``"view"`` (the network input: the expert view for Atari, see
`scaleworld/experts/view.py`), ``"is_init"`` bool (first observation of an episode), ``"acted"``
bool (an agent step the policy chose: the rows PPO learns from), ``"episode_step"`` bool (an
agent step of the episode, chosen or the forced FIRE: what episode lengths count),
``"episode_end"`` bool (the protocol's episode ended: game over or the frame cap, never a lost
life), optional ``"pixels"`` uint8 [N, S, S, 3] (the protocol observation, for tests),
``"action"`` int64 (index into the task's action list), ``("next", "reward")`` float32 [N, 1]
(raw), and ``done``/``terminated``/``truncated`` bool [N, 1] (what the learner sees).
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from scaleworld.atari.envs import FIRE, VectorStep
from scaleworld.experts.tasks import Task


def reset_seed(seed: int, count: int) -> int:
    """The emulator seed of the `count`-th full reset of an env seeded `seed` (a 31-bit int)."""
    return int(np.random.SeedSequence([seed, count]).generate_state(1)[0] & 0x7FFFFFFF)


class MaskedVectorEnv(EnvBase):
    """`task`'s vector of `num_envs` emulators as one TorchRL env of batch size [num_envs]."""

    def __init__(self, task: Task, num_envs: int, *, seed: int, emit_pixels: bool = False,
                 episodic_life: bool = False, fire_reset: bool = False):
        super().__init__(batch_size=torch.Size([num_envs]))
        self.task = task
        self.num_envs = num_envs
        self.emit_pixels = emit_pixels
        self.episodic_life = episodic_life
        self.presses_fire = fire_reset and task.needs_fire
        self._fire_due = np.zeros(num_envs, bool)  # the next step is an episode's first: FIRE for the agent
        self._vector = task.make_vector(num_envs)
        self._view = task.make_view()
        self._action_ids = torch.tensor(task.actions, dtype=torch.int64)  # index -> env action id
        self._seed = seed
        self._full_resets = 0
        self._last: TensorDict | None = None  # the observation entries of the latest step

        n = torch.Size([num_envs])
        flag = Unbounded(shape=n, dtype=torch.bool)
        obs = {"view": Unbounded(shape=(num_envs, *task.view_shape), dtype=task.view_dtype),
               "is_init": flag, "acted": flag.clone(), "episode_step": flag.clone(), "episode_end": flag.clone()}
        if emit_pixels:
            size = task.protocol.frame_size
            obs["pixels"] = Unbounded(shape=(num_envs, size, size, 3), dtype=torch.uint8)
        self.observation_spec = Composite(obs, shape=n)
        self.action_spec = Categorical(len(task.actions), shape=n)
        self.reward_spec = Unbounded(shape=(num_envs, 1), dtype=torch.float32)
        done = Categorical(2, shape=(num_envs, 1), dtype=torch.bool)
        self.done_spec = Composite(done=done, terminated=done.clone(), truncated=done.clone(), shape=n)

    def _observe(self, state: VectorStep, forced: np.ndarray) -> TensorDict:
        """The observation entries of `state`; `forced` [N]: this step's action was the FIRE pressed for the agent."""
        entries = {
            "view": self._view(state.obs, state.first),
            "is_init": torch.from_numpy(state.first.copy()),
            "acted": torch.from_numpy(state.acted & ~forced),
            "episode_step": torch.from_numpy(state.acted.copy()),
            "episode_end": torch.from_numpy(state.terminated | state.truncated),
        }
        self._fire_due = state.first & self.presses_fire
        if self.emit_pixels:
            entries["pixels"] = torch.from_numpy(state.obs.copy())
        return TensorDict(entries, batch_size=self.batch_size)

    def _done(self, terminated: np.ndarray, truncated: np.ndarray) -> dict[str, torch.Tensor]:
        term = torch.from_numpy(terminated.copy()).unsqueeze(-1)
        trunc = torch.from_numpy(truncated.copy()).unsqueeze(-1)
        return {"done": term | trunc, "terminated": term, "truncated": trunc}

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        partial = tensordict is not None and "_reset" in tensordict.keys() and self._last is not None
        if not partial:
            self._view = self.task.make_view()  # a fresh frame stack for fresh emulators
            state = self._vector.reset(seed=reset_seed(self._seed, self._full_resets))
            self._full_resets += 1
            self._last = self._observe(state, np.zeros(self.num_envs, bool))
        no = np.zeros(self.num_envs, bool)
        return self._last.clone().update(self._done(no, no))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        ids = self._action_ids[tensordict["action"].cpu()].numpy()  # [N] ids in the env's action space
        forced = self._fire_due.copy()
        ids = np.where(forced, FIRE, ids)
        state = self._vector.step(ids)
        self._last = self._observe(state, forced & state.acted)
        out = self._last.clone()
        out["reward"] = torch.from_numpy(state.reward.astype(np.float32)).unsqueeze(-1)
        terminated = state.terminated | (state.life_loss if self.episodic_life else False)
        return out.update(self._done(terminated, state.truncated))

    def _set_seed(self, seed: int | None) -> None:
        self._seed = 0 if seed is None else int(seed)
        self._full_resets = 0

    @property
    def full_resets(self) -> int:
        """How many times the emulators were restarted (a resumed run continues the count)."""
        return self._full_resets

    @full_resets.setter
    def full_resets(self, count: int) -> None:
        self._full_resets = count

    def close(self, *, raise_if_closed: bool = True) -> None:
        self._vector.close()
        super().close(raise_if_closed=raise_if_closed)

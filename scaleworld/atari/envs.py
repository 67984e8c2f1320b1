"""Three environment factories under one protocol, producing the same observations.

- `AtariEnv`: a gymnasium env (one game, one emulator) with scaleworld's protocol applied.
- `make_torchrl_env`: the same env wrapped as a TorchRL `GymWrapper` whose rollouts have the dataset
  rows' keys and shapes ("pixels", "action", "is_init", ("next", "reward"), the flags [1], ...).
- `VectorAtari`: many emulators stepped in C++ threads by `ale_py.AtariVectorEnv`, for fast
  collection and evaluation.

All three ask ALE for raw 210x160 RGB frames (max-pooled over the last two frames of each action
repeat) and resize them with the single `preprocess_frames`; no-op starts are drawn by scaleworld
from an explicit generator, never by ALE. With sticky actions off (the default) the three give
identical bytes for the same seed and actions (tests/test_envs.py). With sticky actions on, ALE
draws the repeats from its own per-emulator RNG, and the factories agree in distribution only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from scaleworld.atari.games import NUM_ACTIONS, Game, get_game
from scaleworld.atari.protocol import RAW_HEIGHT, RAW_WIDTH, Protocol, preprocess_frames

NOOP = 0


def _game(game: Game | str) -> Game:
    return game if isinstance(game, Game) else get_game(game)


def noop_generator(seed: int, env_index: int) -> np.random.Generator:
    """The generator that draws no-op start counts for emulator `env_index` of a seeded env."""
    return np.random.default_rng([seed, env_index])


class AtariEnv(gymnasium.Env):
    """One Atari game under `Protocol`, as a gymnasium env.

    Observation: ``{"pixels": uint8 [S, S, 3]}``; action: an id in the full 18-action space;
    reward: raw (unclipped) sum over the action repeat; info: ``lives`` and ``life_loss`` (bool [1]:
    a life was lost on this step without the episode ending). `env_index` selects the no-op
    stream, so ``AtariEnv(env_index=i)`` matches emulator i of a `VectorAtari` with the same seed.
    """

    metadata = {"render_modes": []}

    def __init__(self, game: Game | str, *, protocol: Protocol = Protocol(), env_index: int = 0):
        from ale_py.env import AtariEnv as AleEnv

        self.game = _game(game)
        self.protocol = protocol
        self.env_index = env_index
        self._ale_env = AleEnv(
            game=self.game.rom,
            obs_type="rgb",
            frameskip=1,  # scaleworld repeats actions itself so it can max-pool raw frames
            repeat_action_probability=protocol.sticky_action_prob,
            full_action_space=True,
            max_num_frames_per_episode=protocol.max_episode_frames,
        )
        size = protocol.frame_size
        self.observation_space = gymnasium.spaces.Dict(
            {"pixels": gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8)}
        )
        self.action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self._noops = noop_generator(0, env_index)
        self._lives = 0

    def _repeat(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Repeat `action` for frame_skip frames; max-pool the last two raw frames."""
        last_two: list[np.ndarray] = []
        total = 0.0
        terminated = truncated = False
        info: dict = {}
        for _ in range(self.protocol.frame_skip):
            frame, reward, terminated, truncated, info = self._ale_env.step(action)
            total += float(reward)
            last_two = [last_two[-1], frame] if last_two else [frame]
            if terminated or truncated:
                break
        if self.protocol.max_pool and len(last_two) == 2:
            raw = np.maximum(last_two[0], last_two[1])
        else:
            raw = last_two[-1]
        return raw, total, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._noops = noop_generator(seed, self.env_index)
        while True:
            raw, info = self._ale_env.reset(seed=seed)
            seed = None  # only the first reset of a call is seeded
            done = False
            for _ in range(int(self._noops.integers(0, self.protocol.noop_max + 1))):
                raw, _, terminated, truncated, info = self._repeat(NOOP)
                if terminated or truncated:
                    done = True
                    break
            if not done:
                break
        self._lives = int(info["lives"])
        obs = preprocess_frames(raw, self.protocol.frame_size)
        return {"pixels": obs}, {"lives": self._lives, "life_loss": np.zeros(1, bool)}

    def step(self, action):
        raw, reward, terminated, truncated, info = self._repeat(int(action))
        lives = int(info["lives"])
        life_loss = np.array([lives < self._lives and not terminated])  # [1]: TorchRL's flag shape
        self._lives = lives
        obs = preprocess_frames(raw, self.protocol.frame_size)
        return {"pixels": obs}, reward, terminated, truncated, {"lives": lives, "life_loss": life_loss}

    def close(self) -> None:
        self._ale_env.close()


def make_torchrl_env(game: Game | str, *, protocol: Protocol = Protocol(), env_index: int = 0):
    """`AtariEnv` as a TorchRL env whose rollouts hold the dataset rows' keys, dtypes and shapes
    (`scaleworld.data.dataset`: ``pixels``, ``action``, ``is_init`` and the flags [1], ``("next",
    "reward")`` and ``("next", "life_loss")`` [1]; the datasets' bookkeeping columns ``episode`` and
    ``step`` aside), with ``action_mask`` bool [18] (the game's legal actions in the full action
    space) in every observation and TorchRL's `ActionMask` on it, so the action spec's `rand()` (a
    Collector's default policy) draws legal actions only. `InitTracker` writes ``is_init``: stateful
    policies (an expert, `scaleworld.experts.expert_policy.ExpertPolicy`) start their history on it.

    >>> env = make_torchrl_env("Pong")
    >>> td = env.rollout(4)
    >>> td["pixels"].shape, td["action_mask"][0].nonzero().flatten().tolist()
    (torch.Size([4, 64, 64, 3]), [0, 1, 3, 4, 11, 12])
    >>> set(td["action"].tolist()) <= {0, 1, 3, 4, 11, 12}
    True
    >>> td["is_init"][:, 0].tolist(), td["next", "reward"].shape, td["next", "life_loss"].shape
    ([True, False, False, False], torch.Size([4, 1]), torch.Size([4, 1]))
    """
    import torch
    from torchrl.data import Unbounded
    from torchrl.envs import ActionMask, Compose, GymWrapper, InitTracker, TransformedEnv
    from torchrl.envs.gym_like import default_info_dict_reader

    from scaleworld.atari.legal_actions import LegalActions

    game = _game(game)
    base = GymWrapper(AtariEnv(game, protocol=protocol, env_index=env_index), categorical_action_encoding=True)
    life_loss = Unbounded(shape=(1,), dtype=torch.bool)
    base.set_info_dict_reader(default_info_dict_reader(["life_loss"], spec={"life_loss": life_loss}))
    return TransformedEnv(base, Compose(LegalActions(torch.tensor(game.action_mask())), ActionMask(), InitTracker()))


@dataclass
class VectorStep:
    """What `VectorAtari.step` returns; every array has leading dim N (number of emulators).

    obs:        uint8 [N, S, S, 3]  observation after this step (the one to act on next)
    reward:     float64 [N]         raw reward of the agent step (0 where `acted` is False)
    terminated: bool [N]            the agent step ended the episode (game over)
    truncated:  bool [N]            the agent step hit the frame cap
    life_loss:  bool [N]            the agent step lost a life without ending the episode
    acted:      bool [N]            the action given for this emulator was an agent step; False
                                    while it resets or takes its no-op start (action ignored)
    ready:      bool [N]            `obs` is one the agent acts on (the next step will count)
    first:      bool [N]            `obs` is the first one the agent acts on in its episode
                                    (stateful policies, e.g. frame stacks, reset on it)
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    life_loss: np.ndarray
    acted: np.ndarray
    ready: np.ndarray
    first: np.ndarray


class VectorAtari:
    """N emulators of one game under `Protocol`, stepped together by ``ale_py.AtariVectorEnv``.

    ALE's vector env resets an emulator on the step *after* its episode ends (actions ignored),
    and scaleworld takes no-op starts itself, so an emulator is not always ready for an agent
    action: `VectorStep.acted` / `.ready` say which ones are. Emulator i draws its no-op counts
    from ``noop_generator(seed, i)``, exactly as ``AtariEnv(env_index=i)`` does.
    """

    def __init__(
        self,
        game: Game | str,
        num_envs: int,
        *,
        protocol: Protocol = Protocol(),
        num_threads: int = 0,
    ):
        from ale_py import AtariVectorEnv

        self.game = _game(game)
        self.protocol = protocol
        self.num_envs = num_envs
        self._env = AtariVectorEnv(
            self.game.rom,
            num_envs,
            num_threads=num_threads,
            img_height=RAW_HEIGHT,
            img_width=RAW_WIDTH,
            grayscale=False,
            stack_num=1,
            frameskip=protocol.frame_skip,
            maxpool=protocol.max_pool,
            noop_max=0,  # no-op starts are scaleworld's, drawn from explicit generators
            reward_clipping=False,
            use_fire_reset=False,
            episodic_life=False,
            repeat_action_probability=protocol.sticky_action_prob,
            full_action_space=True,
            max_num_frames_per_episode=protocol.max_episode_frames,
        )
        self._noops: list[np.random.Generator] = []
        self._pending = np.zeros(num_envs, np.int64)  # no-op steps still to take
        self._needs_reset = np.zeros(num_envs, bool)  # episode ended: next step resets
        self._lives = np.zeros(num_envs, np.int64)
        self._fresh = np.ones(num_envs, bool)  # no agent step taken yet in the current episode

    def _draw_noops(self, envs: np.ndarray) -> None:
        for i in np.flatnonzero(envs):
            self._pending[i] = self._noops[i].integers(0, self.protocol.noop_max + 1)

    def _frames(self, raw: np.ndarray) -> np.ndarray:
        return preprocess_frames(raw[:, -1], self.protocol.frame_size)  # [N,1,210,160,3] -> [N,S,S,3]

    def reset(self, *, seed: int) -> VectorStep:
        """Start a new episode in every emulator; returns a step with ``acted`` all False."""
        self._noops = [noop_generator(seed, i) for i in range(self.num_envs)]
        raw, info = self._env.reset(seed=seed)
        self._needs_reset[:] = False
        self._draw_noops(np.ones(self.num_envs, bool))
        self._lives[:] = info["lives"]
        self._fresh[:] = True
        zeros = np.zeros(self.num_envs, bool)
        return VectorStep(
            obs=self._frames(raw),
            reward=np.zeros(self.num_envs),
            terminated=zeros,
            truncated=zeros.copy(),
            life_loss=zeros.copy(),
            acted=zeros.copy(),
            ready=self._pending == 0,
            first=self._pending == 0,
        )

    def step(self, actions: np.ndarray) -> VectorStep:
        """Step every emulator once; `actions` int [N] (ignored where not ready)."""
        resetting = self._needs_reset.copy()
        nooping = ~resetting & (self._pending > 0)
        acted = ~resetting & ~nooping
        actions = np.where(acted, np.asarray(actions, np.int64), NOOP)
        raw, reward, terminated, truncated, info = self._env.step(actions)
        terminated = terminated.astype(bool)
        truncated = truncated.astype(bool)
        done = terminated | truncated
        lives = info["lives"].astype(np.int64)
        life_loss = acted & (lives < self._lives) & ~terminated
        self._lives = lives
        self._pending[nooping] -= 1
        self._needs_reset = (acted | nooping) & done
        self._draw_noops(resetting)
        self._fresh = (self._fresh & ~acted) | resetting
        ready = ~self._needs_reset & (self._pending == 0)
        return VectorStep(
            obs=self._frames(raw),
            reward=np.where(acted, reward.astype(np.float64), 0.0),
            terminated=acted & terminated,
            truncated=acted & truncated,
            life_loss=life_loss,
            acted=acted,
            ready=ready,
            first=ready & self._fresh,
        )

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> VectorAtari:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


FIRE = 1


def events_after_reset(game: Game | str, *, steps: int, fire_first: bool) -> int:
    """Rewards, life losses and game ends in `steps` agent steps of NOOP from a reset (no no-op
    start), after one FIRE if `fire_first`: how the game table's `needs_fire` was measured (a game
    needs FIRE when this is 0 without it and positive with it; tools/probe_fire.py)."""
    events = 0
    fired = not fire_first
    with VectorAtari(game, 1, protocol=Protocol(noop_max=0)) as env:
        state = env.reset(seed=0)
        for _ in range(steps):
            action = NOOP if fired else FIRE
            fired = fired or bool(state.ready[0])
            state = env.step(np.array([action]))
            events += int(state.reward[0] != 0) + int(state.life_loss[0]) + int(state.terminated[0])
            if state.terminated[0] or state.truncated[0]:
                break
    return events

"""Imagination: a trained dynamics model stepped as an environment, many rollouts at once.

The state of rollout b at imagined time t is (z_t, h_{t-1}): the latent frame z_t (int [groups])
and the transformer output h_{t-1} (float [width]) of the previous token (z_{t-1}, a_{t-1}), the
one that predicted z_t. That pair is what a policy needs: h_{t-1} summarises the history, z_t is
the frame now, and neither depends on the action a_t still to be chosen. Stepping with a_t feeds
the token (z_t, a_t) through the KV cache once; its heads give z_{t+1} (sampled from the 32
categoricals), the reward r_t (expected value of the two-hot) and termination (logit > 0).

Rollouts start from real held-out contexts (`StartContexts`): up to C-1 real tokens of history are
prefilled into the cache and the next real frame is the first observation. Windows inside an
episode have the full C-1; the first C-1 steps of every episode start with the shorter history
they really have (none at the episode's first frame, where h = 0), as the agent meets them in the
real game (`scaleworld/evaluation/control.py`), so the policy also trains on episode starts. A
rollout that terminates is restarted from a new context on its own (`KVCache` keeps one history
per row), so one termination never stops the batch. `Imagination` is the fast path the
actor-critic trainer uses; `ImaginationEnv` (TorchRL) wraps the same object, and both produce the
same trajectories for the same generator (tested).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from tensordict import TensorDict

from scaleworld.data.collect import Policy
from scaleworld.data.dataset import OfflineDataset
from scaleworld.errors import ScaleworldError
from scaleworld.models.categorical import sample_categorical
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.twohot import expected_value


@dataclass(frozen=True)
class StartContexts:
    """Real start windows of at most `steps` consecutive steps inside held-out episodes of one game.

    tokens uint8 [rows, groups] and actions int64 [rows] are the held-out rows. Window w covers
    rows starts[w] .. starts[w] + history[w]: `history` int64 [windows] real tokens (at most
    steps - 1), then the first observation's row. `history` defaults to steps - 1 for every window.
    """

    tokens: torch.Tensor
    actions: torch.Tensor
    starts: torch.Tensor
    steps: int
    game: int | None
    """The game's index in a joint model (None for a single-game model)."""
    action_mask: torch.Tensor
    """bool [18]: the game's legal actions."""
    history: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.history is None:
            object.__setattr__(self, "history", torch.full_like(self.starts, self.steps - 1))
        bad = len(self.history) and not bool((self.history >= 0).all() and (self.history < self.steps).all())
        if self.history.shape != self.starts.shape or bad:
            raise ValueError(f"history must be one length in [0, steps - 1 = {self.steps - 1}] per start window")

    @classmethod
    def from_dataset(cls, ds: OfflineDataset, episodes: torch.Tensor, *, steps: int, game: int | None,
                     device: torch.device | str = "cpu") -> StartContexts:
        from scaleworld.atari.games import get_game

        if steps < 1:
            raise ScaleworldError(f"context_steps={steps} must be at least 1")
        rows, starts, history = [], [], []
        offset = 0
        for e in episodes.tolist():
            first, n = int(ds.episode_starts[e]), int(ds.episode_lengths[e])
            rows.append(torch.arange(first, first + n))
            short = torch.arange(min(steps - 1, n))  # the episode's first frames: all the history they have
            full = torch.arange(max(0, n - steps + 1))
            starts += [torch.full_like(short, offset), offset + full]
            history += [short, torch.full_like(full, steps - 1)]
            offset += n
        if offset == 0:
            raise ScaleworldError(f"{ds.path}: no held-out episode to start imagination from: "
                                  "hold out more episodes (data.val_fraction)")
        index = torch.cat(rows)
        return cls(tokens=torch.as_tensor(ds.data["tokens"][index]).to(device),
                   actions=torch.as_tensor(ds.data["action"][index]).to(device),
                   starts=torch.cat(starts).to(device), steps=steps, game=game,
                   action_mask=torch.tensor(get_game(ds.game).action_mask(), device=device),
                   history=torch.cat(history).to(device))

    def __len__(self) -> int:
        return len(self.starts)

    def to(self, device: torch.device | str) -> StartContexts:
        return dataclasses.replace(self, tokens=self.tokens.to(device), actions=self.actions.to(device),
                                   starts=self.starts.to(device), action_mask=self.action_mask.to(device),
                                   history=self.history.to(device))

    def windows(self, picks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Window indices int64 [R] -> tokens int64 [R, steps, groups], actions int64 [R, steps] and
        history int64 [R]. A short window is left-padded with copies of its first row, so the real
        rows always end at step steps - 1 (the padding is masked out by `DynamicsModel.prefill`)."""
        history = self.history[picks]
        offset = torch.arange(self.steps, device=picks.device)[None, :] - (self.steps - 1 - history)[:, None]
        index = self.starts[picks][:, None] + offset.clamp(min=0)  # [R, steps]
        return self.tokens[index].long(), self.actions[index], history


class Imagination:
    """`batch` imagined rollouts of a dynamics model (the fast path: plain tensors, no TensorDict).

    All randomness (start windows, sampled latents) comes from `generator`, which must live on
    the model's device. State after `reset`/`step`: `latent` int64 [B, groups], `hidden` float
    [B, width] and `action_mask` bool [B, 18].

    `horizon`: the longest `rollout` it will be asked for (None: any, and `step` without a rollout,
    as ImaginationEnv does); the KV cache then keeps only the slots a rollout can fill. `rollout`
    refuses a longer one; stepping past it by calling `step` is the caller's to avoid (a row would
    attend to fewer than its tokens).

    `rollout` runs eagerly; on CUDA, `scaleworld.imagination.graphed.GraphedRollout(imagination)`
    replays one captured CUDA graph per imagined step of it (same trajectories, far fewer kernel
    launches). It wraps this class rather than this class choosing it, so neither imports the other
    in a circle.
    """

    def __init__(self, model: DynamicsModel, starts: StartContexts, *, batch: int, generator: torch.Generator,
                 horizon: int | None = None):
        if starts.steps - 1 > model.config.context:
            raise ScaleworldError(f"context_steps={starts.steps} exceeds the model's context + 1")
        if (starts.game is None) != (not model.config.games):
            raise ScaleworldError("start contexts and model disagree on joint mode: pass the game's index "
                                  "for a joint model and None for a single-game model")
        self.model = model
        self.starts = starts
        self.batch = batch
        self.generator = generator
        self.device = next(model.parameters()).device
        if horizon is not None and horizon < 1:
            raise ScaleworldError(f"horizon={horizon} must be at least 1")
        self.horizon = horizon
        # a rollout's rows hold at most context_steps - 1 + horizon tokens: a cache of that many slots (not
        # the model's whole window) holds all of them and is read in full at every step
        live = None if horizon is None else min(model.config.context, starts.steps - 1 + horizon)
        self.cache = model.new_cache(batch, length=live)
        self.game = None if starts.game is None else torch.full((batch,), starts.game, device=self.device)
        self.latent = torch.zeros(batch, model.config.groups, dtype=torch.int64, device=self.device)
        self.hidden = torch.zeros(batch, model.config.width, device=self.device)
        self.action_mask = starts.action_mask.expand(batch, -1)

    @torch.no_grad()
    def reset(self, rows: torch.Tensor | None = None,
              contexts: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """Restart every rollout (rows None) or those where `rows` (bool [B]) is True from new real
        contexts: drawn from the start windows, or the given `contexts` (tokens [B, C, groups], actions
        [B, C], history [B], as `start_from` takes them, of which the restarting rows are used)."""
        if rows is None:
            self.cache.reset()
            index = torch.arange(self.batch, device=self.device)
        else:
            index = rows.nonzero().squeeze(-1)
            if len(index) == 0:
                return
        if contexts is None:
            latent, hidden = self.restart(index)
        else:
            latent, hidden = self.start_from(index, *(x[index] for x in contexts))
        # new tensors, not in-place writes: the terminal state may already sit in a recorded step
        self.latent, self.hidden = self.latent.clone(), self.hidden.clone()
        self.latent[index] = latent
        self.hidden[index] = hidden

    def draw_picks(self, rows: int) -> torch.Tensor:
        """The start windows of `rows` restarting rollouts, int64 [rows] (the only draw a restart makes)."""
        return torch.randint(len(self.starts), (rows,), generator=self.generator, device=self.device)

    @torch.no_grad()
    def restart(self, index: torch.Tensor, picks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Give rows `index` (int64 [R]) new real contexts in the cache; returns their first state,
        latent int64 [R, groups] and hidden float [R, width], for the caller to write into its state.

        picks int64 [R]: the windows (default: `draw_picks(R)`). Given, the restart draws nothing and
        makes no host sync, so a CUDA graph can capture it (graphed.py draws the picks eagerly first)."""
        if picks is None:
            picks = self.draw_picks(len(index))
        return self.start_from(index, *self.starts.windows(picks))

    @torch.no_grad()
    def start_from(self, index: torch.Tensor, tokens: torch.Tensor, actions: torch.Tensor,
                   history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Give rows `index` (int64 [R]) the contexts tokens int64 [R, C, groups] and actions int64 [R, C],
        of which the last history[r] + 1 steps are real (left padding before them): the real tokens
        before the last step become the row's history, the last step's latent its first observation.
        Returns that first state (latent [R, groups], hidden [R, width]) as `restart` does."""
        game = None if self.game is None else self.game[index]
        heads = self.model.prefill(self.cache, index, tokens[:, :-1], actions[:, :-1], game, lengths=history)
        if heads is None:  # context_steps=1: every history is empty, nothing summarised yet
            return tokens[:, -1], torch.zeros(len(index), self.hidden.shape[1], device=self.device)
        # an empty history (an episode's first frame) has h = 0, as in the real game
        return tokens[:, -1], torch.where((history > 0)[:, None], heads["hidden"][:, 0].float(), 0.0)

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Act with `action` int [B]; returns (reward float [B], terminated bool [B]) and moves the
        state to (z_{t+1}, h_t). Terminated rollouts keep their terminal state until `reset`."""
        out = self.model.step(self.cache, self.latent, action, self.game)
        self.latent = sample_categorical(out["latent_logits"][:, 0], self.generator)
        self.hidden = out["hidden"][:, 0].float()
        reward = expected_value(out["reward_logits"][:, 0].float(), self.model.config.reward_limit)
        return reward, out["termination_logits"][:, 0] > 0

    def observation(self) -> TensorDict:
        return TensorDict({"latent": self.latent, "hidden": self.hidden, "action_mask": self.action_mask},
                          batch_size=[self.batch], device=self.device)

    def check_horizon(self, horizon: int) -> None:
        """Refuse a rollout longer than the `horizon` this imagination's KV cache was sized for."""
        if self.horizon is not None and horizon > self.horizon:
            raise ScaleworldError(f"a rollout of {horizon} steps from an imagination made for {self.horizon}: "
                                  "make it with the longer horizon")

    @torch.no_grad()
    def rollout(self, policy: Policy, horizon: int) -> TensorDict:
        """`horizon` steps from fresh starts under `policy` (in imagination it reads latent, hidden, action_mask;
        writes action) -> TensorDict [B, horizon] in TorchRL's layout (root = the state acted
        from, ``next`` = what followed); terminated rollouts restart before the next step, as
        `env.rollout(..., break_when_any_done=False)` does."""
        self.check_horizon(horizon)
        self.reset()
        steps = []
        for t in range(horizon):
            td = policy(self.observation())
            reward, terminated = self.step(td["action"])
            done = terminated[:, None]
            td["next"] = self.observation().update(
                {"reward": reward[:, None], "terminated": done, "truncated": torch.zeros_like(done), "done": done})
            steps.append(td)
            if t < horizon - 1:
                self.reset(terminated)
        return torch.stack(steps, dim=1)

"""PPO from TorchRL parts: a `Collector` over `MaskedVectorEnv`, `GAE`, `ClipPPOLoss`, Adam.

`train_ppo(task, config, out)` trains an actor-critic on an Atari game (`AtariTask`, Nature CNN on
the expert view, rewards sign-clipped for learning only) or on any discrete gymnasium env
(`GymTask`, MLP). It writes into `out`:

    training/config.json   the task and the PPOConfig
    training/state.pt      the latest checkpoint (see `scaleworld/experts/ppo_state.py`)
    training/episodes.csv  one row per finished episode: update, frames, env, return (raw), length
    training/updates.csv   one row per update: losses, entropy, KL, clip fraction, frames/s
    expert.json, policy.pt2  (Atari tasks, once training finishes) the expert checkpoint

Calling `train_ppo` again on the same `out` with the same task and config resumes from the last
checkpoint (see `ppo_state.py` for what is restored exactly).

`device` is where the network learns (GAE, the PPO epochs) and acts: the collector moves each
step's views there and the actions back, and the actions are drawn there by Gumbel-max with a
generator on that device (`SampledPolicy`), so on a GPU only the emulators run on the CPU
(tools/bench_ppo.py measures PPO against raw emulator stepping). The exported expert is a CPU copy.

The budget is agent steps (`PPOConfig.agent_steps`): every env transition of every update
(including the rare reset/no-op steps of `VectorAtari`), spent in whole updates of num_envs x
rollout_steps; frames are agent steps times the task's frame skip. The loss is clipped PPO with
the value loss 0.5 x value_coef x squared error, clipped like the policy (PPOConfig), and the
learning-only signals of `train_env.py` (episodic life, FIRE at the start in games that wait for it).

Determinism: every random draw comes from an explicitly seeded source: network initialisation
(a `torch.Generator`), action sampling (`SampledPolicy`, its own generator on the learner's device,
checkpointed),
minibatch order (another generator, on the CPU), the emulators (ALE seeded by `train_env.reset_seed`, no-op
starts by `scaleworld.atari.envs.noop_generator`). The global torch RNG is never read. So on one
machine with a fixed number of torch threads a seed fixes the run; the float results (and so,
over many updates, the trajectories) change with the thread count and the CPU's kernels, as the
order of floating-point reductions does. On a GPU, cuDNN's convolution algorithms and TF32 make
the learner's arithmetic nondeterministic, so a GPU run is reproducible only statistically; the
device is recorded in the expert's provenance. Resumes: see `ppo_state.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.experts.ppo_config import PPOConfig
from scaleworld.experts.ppo_logs import RunLogs
from scaleworld.experts.ppo_state import load_state, save_state
from scaleworld.experts.tasks import AtariTask, Task
from scaleworld.models.categorical import sample_categorical
from scaleworld.progress import progress_bar


@dataclass(frozen=True)
class PPOResult:
    """What one `train_ppo` call did."""

    out: Path
    updates_done: int
    total_updates: int
    frames_done: int
    finished: bool
    episode_returns: list[float]
    """Raw returns of the episodes that finished during this call, in the order they ended."""


class SampledPolicy(TensorDictModuleBase):
    """The collector's policy: ``"view"`` -> ``"action"`` (index) and ``"action_log_prob"``, drawn
    from the model's logits with `generator` (Gumbel-max, on the generator's device), never from
    the global torch RNG: sampling is seeded explicitly, runs where the network is, and can be
    checkpointed. The log-probability is the Categorical one that `ClipPPOLoss` recomputes.
    """

    def __init__(self, model: torch.nn.Module, generator: torch.Generator):
        super().__init__()
        self.logits = model.logits_module()  # view -> logits [N, actions]
        self.generator = generator
        self.in_keys = ["view"]
        self.out_keys = ["action", "action_log_prob"]

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        logits = self.logits(tensordict["view"]).float()
        action = sample_categorical(logits, self.generator)  # [N]
        tensordict["action"] = action
        tensordict["action_log_prob"] = logits.log_softmax(-1).gather(-1, action[..., None])[..., 0]
        return tensordict


def _check_resumable(state: dict[str, Any], task: Task, config: PPOConfig, out: Path) -> None:
    from scaleworld.training.trainer import first_difference

    difference = first_difference({"task": state["task"], "config": state["config"]},
                                  {"task": task.to_dict(), "config": config.to_dict()})
    if difference is not None:
        raise ScaleworldError(f"{out} holds a PPO run of other settings ({difference}): resume with the same "
                              "settings or choose another --out")


def train_ppo(
    task: Task,
    config: PPOConfig,
    out: str | Path,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
) -> PPOResult:
    """Train (or resume training) PPO on `task` into `out`, learning on `device`; see the module docstring.

    `stop_after` ends this call after that many updates with a checkpoint, as a preemption would
    (a later call resumes); None runs to the end of the budget.
    """
    from torchrl.collectors import Collector
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    from scaleworld.experts.train_env import MaskedVectorEnv

    out = Path(out)
    training = out / "training"
    state = load_state(training)
    if state is not None:
        _check_resumable(state, task, config, out)
    total = config.total_updates()
    start = 0 if state is None else state["updates_done"]
    steps_per_update = config.num_envs * config.rollout_steps
    frames_per_update = steps_per_update * task.frames_per_step
    device = torch.device(device)
    model = task.make_network(seed=config.seed).to(device)  # learns and acts
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, eps=config.adam_eps)
    sample_rng = torch.Generator(device=device).manual_seed(config.seed)
    minibatch_rng = torch.Generator().manual_seed(config.seed + 1)
    if state is not None:
        if state.get("acting_device", "cpu") != device.type:  # generator states differ between device kinds
            raise ScaleworldError(f"{out} was checkpointed acting on {state.get('acting_device', 'cpu')}: resume "
                                  f"it on that kind of device (--device {state.get('acting_device', 'cpu')})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])  # Adam's moments follow the parameters' device
        sample_rng.set_state(state["sample_rng"])
        minibatch_rng.set_state(state["minibatch_rng"])
    if start >= total:  # finished earlier; export again only if killed between the last checkpoint and export
        _export(out, task, config, model, total, frames_per_update, device)
        return PPOResult(out, start, total, start * frames_per_update, True, [])
    training.mkdir(parents=True, exist_ok=True)
    write_json_atomic(training / "config.json", {"task": task.to_dict(), "config": config.to_dict()})
    env = MaskedVectorEnv(task, config.num_envs, seed=config.seed, episodic_life=config.episodic_life,
                          fire_reset=config.fire_reset)
    env.full_resets = start  # a resumed run restarts its emulators from a seed of (seed, start)
    logs = RunLogs(training, keep_updates_below=start)

    loss_module = ClipPPOLoss(
        model.policy, model.loss_value, clip_epsilon=config.clip_epsilon, entropy_coeff=config.entropy_coef,
        critic_coeff=0.5 * config.value_coef, loss_critic_type="l2",  # l2 is the squared error: 0.5 x vf x SE
        clip_value=config.clip_epsilon if config.clip_value_loss else None,
        normalize_advantage=config.normalize_advantage,
    )
    loss_module.loss_mask_key = None  # invalid rows are dropped before the loss (see train_env.py)
    gae = GAE(gamma=config.gamma, lmbda=config.gae_lambda, value_network=model.value, average_gae=False)
    gae.set_keys(reward="learn_reward")
    collector = Collector(
        env, SampledPolicy(model, sample_rng), frames_per_batch=steps_per_update, total_frames=-1,
        env_device="cpu", policy_device=device, storing_device=device,
    )
    returns = np.zeros(config.num_envs)  # raw return of each env's episode in progress
    lengths = np.zeros(config.num_envs, np.int64)
    finished_returns: list[float] = []
    update = start
    stop = total if stop_after is None else min(total, start + stop_after)
    try:
        with progress_bar(progress, f"PPO {task.name} frames", total * frames_per_update,
                          completed=start * frames_per_update) as advance:
            tick = time.perf_counter()
            for batch in collector:
                # batch: [N, T]; the ("next", "acted") rows are the agent steps
                ended = _episodes(batch, returns, lengths)
                frames = (update + 1) * frames_per_update
                for env_index, ret, length in ended:
                    logs.episode(update=update, frames=frames, env=env_index, ret=ret, length=length)
                    finished_returns.append(ret)
                if config.anneal_lr:
                    for group in optimizer.param_groups:
                        group["lr"] = config.learning_rate * (1.0 - update / total)
                stats = _learn(batch, gae, loss_module, optimizer, model, config, minibatch_rng, update)
                update += 1
                now = time.perf_counter()
                elapsed, tick = now - tick, now
                logs.update(update=update - 1, frames=frames, stats=stats, episodes=len(ended),
                            seconds=elapsed, frames_per_s=frames_per_update / elapsed)
                advance(frames_per_update, _recent(finished_returns))
                if update == stop or update % config.checkpoint_every == 0:
                    save_state(training, task=task.to_dict(), config=config.to_dict(), updates_done=update,
                               model=model, optimizer=optimizer, sample_rng=sample_rng,
                               minibatch_rng=minibatch_rng, acting_device=device.type)
                if update == stop:
                    break
    finally:
        collector.shutdown()
        logs.close()
    if update == total:
        _export(out, task, config, model, total, frames_per_update, device)
    return PPOResult(out, update, total, update * frames_per_update, update == total, finished_returns)


def _export(out: Path, task: Task, config: PPOConfig, model, updates: int, frames_per_update: int,
            device: torch.device) -> None:
    """Write the expert checkpoint of a finished Atari run (once: expert.json marks it done): a CPU copy
    of the network, and its provenance with the budget in both units and the learning-only signals."""
    import copy

    from scaleworld.experts.checkpoint import EXPERT_JSON, save_expert

    if not isinstance(task, AtariTask) or (out / EXPERT_JSON).exists():
        return
    steps = updates * config.num_envs * config.rollout_steps
    save_expert(
        out, module=copy.deepcopy(model.logits_module()).cpu(), game=task.game, view=task.view_spec,
        actions=task.actions, protocol=task.protocol,
        provenance={"trainer": "scaleworld.experts.ppo", "task": task.to_dict(), "config": config.to_dict(),
                    "updates": updates, "agent_steps": steps, "frames": updates * frames_per_update,
                    "learning_signals": learning_signals(task, config), "learned_on": device.type},
    )


def learning_signals(task: Task, config: PPOConfig) -> dict[str, Any]:
    """What learning saw beyond the protocol (recorded in the expert's provenance; never in its data)."""
    return {"episodic_life": config.episodic_life, "fire_reset": config.fire_reset and task.needs_fire,
            "clip_rewards": config.clip_rewards,
            "value_loss": "0.5 x value_coef x squared error" + (", clipped" if config.clip_value_loss else "")}


def _recent(returns: list[float], k: int = 20) -> str:
    return f"return {np.mean(returns[-k:]):.1f}" if returns else ""


def _episodes(batch: TensorDictBase, returns: np.ndarray, lengths: np.ndarray) -> list[tuple[int, float, int]]:
    """Advance the per-env raw return accumulators over batch [N, T]; return the episodes that ended
    (the protocol's episodes: a lost life under episodic life ends none)."""
    acted = batch["next", "episode_step"].cpu().numpy()  # [N, T]
    reward = batch["next", "reward"].squeeze(-1).cpu().numpy()  # [N, T]
    done = batch["next", "episode_end"].cpu().numpy() & acted
    ended = []
    for t in range(acted.shape[1]):
        returns += np.where(acted[:, t], reward[:, t], 0.0)
        lengths += acted[:, t]
        for i in np.flatnonzero(done[:, t]):
            ended.append((int(i), float(returns[i]), int(lengths[i])))
            returns[i] = 0.0
            lengths[i] = 0
    return ended


def _learn(batch, gae, loss_module, optimizer, model, config: PPOConfig, rng: torch.Generator,
           update: int) -> dict[str, float]:
    """GAE over the full [N, T] batch, then epochs x minibatches of clipped-PPO steps on the agent steps."""
    reward = batch["next", "reward"]
    batch["next", "learn_reward"] = reward.sign() if config.clip_rewards else reward
    with torch.no_grad():
        gae(batch)  # writes advantage, value_target, state_value: [N, T, 1]
    data = batch.reshape(-1)
    data = data[data["next", "acted"]]  # [M] agent steps only
    data = data.select("view", "action", "action_log_prob", "advantage", "value_target", "state_value")
    sums: dict[str, float] = {}
    count = 0
    for _ in range(config.epochs):
        order = torch.randperm(len(data), generator=rng)
        for index in order.chunk(config.minibatches):
            losses = loss_module(data[index])
            total = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            if not (torch.isfinite(total) and torch.isfinite(grad_norm)):  # stop before the weights are poisoned
                what = "loss" if not torch.isfinite(total) else "gradient norm"
                value = total.item() if what == "loss" else grad_norm.item()
                raise ScaleworldError(
                    f"PPO {what} is not finite ({value}) at update {update}: lower the learning rate or check "
                    "the environment's rewards (a rerun resumes from the last checkpoint)"
                )
            optimizer.step()
            for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx", "clip_fraction"):
                sums[key] = sums.get(key, 0.0) + float(losses[key].detach())
            count += 1
    return {key: value / count for key, value in sums.items()}

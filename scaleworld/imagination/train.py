"""Training a policy purely inside a world model: imagined rollouts -> actor-critic updates.

Each training step imagines `batch_size` rollouts of `horizon` steps from real held-out contexts
(`Imagination.rollout`, the fast path, no gradient through the frozen world model) and takes one
optimiser step on `ActorCriticLoss`. It runs on the project's `Trainer`, so a policy run has the
same checkpoints, exact resumption (the imagination's and the policy's generators are saved),
NaN guard, logs and progress bar as the world-model runs. On CUDA the frozen dynamics model
imagines in bf16.

A run folder holds ``checkpoint.pt``, ``logs/``, ``metrics.json`` and, when finished,
``policy.pt`` (the actor-critic) and ``run.json``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torchrl.objectives import SoftUpdate

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.files import write_json_atomic
from scaleworld.data.sampling import split_episodes
from scaleworld.errors import ScaleworldError
from scaleworld.imagination.config import DEFAULT_STARTS, START_SPLITS
from scaleworld.imagination.core import Imagination, StartContexts
from scaleworld.imagination.graphed import GraphedRollout
from scaleworld.models.agent import ActorCritic, ActorPolicy, AgentConfig
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.model_files import POLICY_FILE, check_same_tokenizer, load_dynamics, save_model
from scaleworld.models.policy_config import PolicyConfig
from scaleworld.objectives.actor_critic import ActorCriticLoss
from scaleworld.training.config import TrainConfig
from scaleworld.training.trainer import Trainer


def train_in_imagination(model: DynamicsModel, starts: StartContexts, *, config: PolicyConfig, train: TrainConfig,
                         out: str | Path, device: str | torch.device = "cpu", progress: bool = True,
                         describe: str = "policy", identity: dict[str, Any] | None = None,
                         ) -> tuple[ActorCritic, dict[str, Any]]:
    """Train an actor-critic inside `model` (frozen) from `starts`; returns it and the final metrics.

    `identity` (e.g. the world model's SHA-256) is stored in the checkpoint with `config`: a run
    folder resumes only a run with the same ones."""
    device = torch.device(device)
    model = model.to(device).eval().requires_grad_(False)
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    torch.manual_seed(train.seed)
    c = model.config
    agent = ActorCritic(AgentConfig.for_model(c, config)).to(device)
    imagine_gen = torch.Generator(device=device).manual_seed(train.seed)
    policy_gen = torch.Generator(device=device).manual_seed(train.seed + 1)
    imagination = Imagination(model, starts.to(device), batch=train.batch_size, generator=imagine_gen,
                              horizon=config.horizon)
    # on CUDA every imagined step is replayed from a captured graph: the same rollouts, fewer launches
    rollout = GraphedRollout(imagination).rollout if device.type == "cuda" else imagination.rollout
    policy = ActorPolicy(agent, generator=policy_gen)
    loss = ActorCriticLoss(agent, gamma=config.gamma, lmbda=config.lmbda, entropy_coef=config.entropy_coef,
                           return_decay=config.return_decay).to(device)
    slow_critic = SoftUpdate(loss, tau=config.target_tau)  # the target critic follows each update

    def catch_up() -> None:  # a checkpoint of the earlier loss: its target had not yet followed the last update
        if loss.target_behind:
            slow_critic.step()
            loss.target_behind = False

    def imagined(batch: int) -> Any:
        """The Trainer's batch of train.batch_size rollouts: the imagination's batch, fixed when it was made."""
        if batch != imagination.batch:
            raise ScaleworldError(f"asked for {batch} imagined rollouts, the imagination makes {imagination.batch}")
        return rollout(policy, config.horizon)

    trainer = Trainer(loss=loss, sample_train=imagined,
                      sample_val=None, config=train, run_dir=out, device=device, progress=progress,
                      generators={"imagination": imagine_gen, "policy": policy_gen}, describe=describe,
                      identity={"policy": asdict(config), **(identity or {})}, after_step=slow_critic.step,
                      after_resume=catch_up)
    final = trainer.fit()
    return agent, final


def start_contexts(model: DynamicsModel, identity: dict[str, Any], ds: OfflineDataset, *, starts: str,
                   steps: int) -> StartContexts:
    """The real start windows of the game of `ds` from the episodes `starts` names (`START_SPLITS`)
    of the model's own split (`identity`: `load_dynamics`'s record of the model)."""
    if starts not in START_SPLITS:
        raise ScaleworldError(f"starts={starts!r}: use one of {', '.join(START_SPLITS)}")
    if ds.game not in identity["games"]:
        raise ScaleworldError(f"{ds.path}: the model was trained on {identity['games']}, not {ds.game}")
    games = list(model.config.games)
    train_eps, val = split_episodes(len(ds.episode_lengths), val_fraction=identity["val_fraction"],
                                    seed=identity["split_seed"])
    episodes = {"held_out": val, "train": train_eps, "all": torch.cat([train_eps, val]).sort().values}[starts]
    return StartContexts.from_dataset(ds, episodes, steps=steps, game=games.index(ds.game) if games else None)


def train_policy(*, dynamics_dir: str | Path, token_dir: str | Path, out: str | Path, config: PolicyConfig,
                 train: TrainConfig, starts: str = DEFAULT_STARTS, device: str | torch.device = "cpu",
                 progress: bool = True) -> dict[str, Any]:
    """Train a policy for the game of `token_dir` inside the dynamics model of `dynamics_dir`.

    Rollouts start from real contexts of the episodes `starts` names (`START_SPLITS`) of the
    model's own split; the model must have been trained on this game.
    """
    if starts not in START_SPLITS:
        raise ScaleworldError(f"starts={starts!r}: use one of {', '.join(START_SPLITS)}")
    out = Path(out)
    model, identity = load_dynamics(dynamics_dir)
    ds = OfflineDataset.open(token_dir)
    if not ds.is_tokens:
        raise ScaleworldError(f"{token_dir}: expected a token dataset (scaleworld tokens encode)")
    if ds.game not in identity["games"]:
        raise ScaleworldError(f"{token_dir}: the model in {dynamics_dir} was trained on {identity['games']}, "
                              f"not {ds.game}")
    tokenizer_sha256 = ds.manifest["tokenizer"]["sha256"]
    check_same_tokenizer(identity, tokenizer_sha256, what=f"the token dataset {token_dir}")
    contexts = start_contexts(model, identity, ds, starts=starts, steps=config.context_steps)
    agent, final = train_in_imagination(model, contexts, config=config, train=train, out=out, device=device,
                                        progress=progress, describe=f"policy {ds.game}",
                                        identity={"dynamics_sha256": identity["sha256"], "game": ds.game,
                                                  "tokenizer_sha256": tokenizer_sha256,
                                                  **({"starts": starts} if starts != START_SPLITS[0] else {})})
    info = {
        "kind": "policy", "game": ds.game, "dynamics_sha256": identity["sha256"], "dynamics_games": identity["games"],
        "policy": asdict(config), "train": asdict(train), "starts": starts, "start_windows": len(contexts),
        "final": final,
    }
    save_model(out / POLICY_FILE, kind="policy", config=agent.config.to_dict(), module=agent.cpu(),
               extra={"game": ds.game, "dynamics_sha256": identity["sha256"], "tokenizer_sha256": tokenizer_sha256,
                      "policy": asdict(config)})
    write_json_atomic(out / "run.json", info)
    return info


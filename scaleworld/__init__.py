"""scaleworld: scaling studies of transformer world models on Atari 100k.

The public API: the parts a TorchRL user combines with TorchRL's own (datasets and their window
sampler, the Atari envs, the world model and its losses, imagination as an env, the trainers), and
the study entry points. Each name is imported on first use, so ``import scaleworld`` (and the
command line's start-up) stays free of torch:

>>> import scaleworld
>>> scaleworld.ImaginationEnv.__module__
'scaleworld.imagination.env'
"""

from __future__ import annotations

import importlib
from typing import Any

from scaleworld.version import __version__

_PUBLIC = {
    "ScaleworldError": "scaleworld.errors",
    # data
    "OfflineDataset": "scaleworld.data.dataset",
    "EpisodeWindowSampler": "scaleworld.data.sampling",
    "MultiGameWindows": "scaleworld.data.sampling",
    "collect_dataset": "scaleworld.data.collect",
    "RandomPolicy": "scaleworld.data.random_policy",
    # Atari
    "Protocol": "scaleworld.atari.protocol",
    "AtariEnv": "scaleworld.atari.envs",
    "VectorAtari": "scaleworld.atari.envs",
    "make_torchrl_env": "scaleworld.atari.envs",
    "LegalActions": "scaleworld.atari.legal_actions",
    "get_game": "scaleworld.atari.games",
    # experts
    "ExpertPolicy": "scaleworld.experts.expert_policy",
    "ViewSpec": "scaleworld.experts.view",
    "load_expert": "scaleworld.experts.checkpoint",
    "save_expert": "scaleworld.experts.checkpoint",
    # models and their files
    "Tokenizer": "scaleworld.models.tokenizer",
    "TokenizerConfig": "scaleworld.models.tokenizer_config",
    "DynamicsModel": "scaleworld.models.dynamics",
    "DynamicsConfig": "scaleworld.models.dynamics_config",
    "ActorCritic": "scaleworld.models.agent",
    "AgentConfig": "scaleworld.models.agent",
    "ActorPolicy": "scaleworld.models.agent",
    "load_tokenizer": "scaleworld.models.model_files",
    "load_dynamics": "scaleworld.models.model_files",
    "load_policy": "scaleworld.models.model_files",
    # objectives (TorchRL LossModules)
    "TokenizerLoss": "scaleworld.objectives.world_model",
    "DynamicsLoss": "scaleworld.objectives.world_model",
    "ActorCriticLoss": "scaleworld.objectives.actor_critic",
    # training
    "TrainConfig": "scaleworld.training.config",
    "Trainer": "scaleworld.training.trainer",
    "train_tokenizer": "scaleworld.training.runs",
    "train_dynamics": "scaleworld.training.runs",
    "pack_runs": "scaleworld.training.packed",
    # imagination
    "StartContexts": "scaleworld.imagination.core",
    "Imagination": "scaleworld.imagination.core",
    "ImaginationEnv": "scaleworld.imagination.env",
    "train_policy": "scaleworld.imagination.train",
    "PolicyConfig": "scaleworld.models.policy_config",
    # evaluation
    "evaluate_fidelity": "scaleworld.evaluation.fidelity",
    "score_policy": "scaleworld.evaluation.scores",
    "WorldModelAgent": "scaleworld.evaluation.control",
    # studies
    "load_spec": "scaleworld.study.spec_load",
    "build_graph": "scaleworld.study.expand",
}

__all__ = ["__version__", *_PUBLIC]


_RENAMED = {"WorldModelLoss": "DynamicsLoss"}
"""Public names that changed: the old name's error gives the new one."""


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        raise AttributeError(f"scaleworld.{name} is now scaleworld.{_RENAMED[name]} (torchrl.objectives has a "
                             f"{name} of its own)")
    if name not in _PUBLIC:
        raise AttributeError(f"module 'scaleworld' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""Shared fixtures: small real datasets collected once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")  # before torchrl is first imported

import pytest  # noqa: E402

from scaleworld.atari.protocol import Protocol  # noqa: E402
from scaleworld.data.collect import collect_dataset  # noqa: E402
from scaleworld.data.random_policy import RandomPolicy  # noqa: E402

# Short episodes (a 400-frame cap = at most 100 agent steps) give many episode boundaries in a
# few hundred steps, which is what the sampling and invariant tests need.
SHORT = Protocol(max_episode_frames=400, noop_max=8)


def collect(out, *, game="Breakout", steps=600, seed=0, protocol=SHORT, num_envs=4):
    policy = RandomPolicy(seed=seed)
    collect_dataset(
        game=game, policy=policy, policy_identity=policy.identity, steps=steps, out=out,
        protocol=protocol, seed=seed, num_envs=num_envs, progress=False,
    )
    return out


@pytest.fixture
def one_torch_thread():
    """PPO's small batches run faster on one torch thread on a shared 2-core machine (no contention)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def breakout_ds(tmp_path_factory):
    return collect(tmp_path_factory.mktemp("data") / "breakout")


@pytest.fixture(scope="session")
def pong_ds(tmp_path_factory):
    return collect(tmp_path_factory.mktemp("data") / "pong", game="Pong", steps=300, seed=1)


# The frozen tokenizer below is untrained: its codes describe little, so encoding with it passes the
# quality gate only when allowed explicitly (the gate itself is tested in test_tokenizer_quality.py).
ANY_RESIDUAL = float("inf")


@pytest.fixture(scope="session")
def frozen_tokenizer(tmp_path_factory):
    """A small randomly initialised tokenizer saved as a run folder: a fixed, deterministic encoder
    of real frames (training it is tested separately; here it only has to be frozen)."""
    import torch

    from scaleworld.models.model_files import TOKENIZER_FILE, save_model
    from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

    torch.manual_seed(0)
    config = TokenizerConfig(channels=(8, 16, 32, 32))
    out = tmp_path_factory.mktemp("tokenizer")
    save_model(out / TOKENIZER_FILE, kind="tokenizer", config=config.to_dict(), module=Tokenizer(config),
               extra={"scope": "test", "games": []})
    return out


@pytest.fixture(scope="session")
def breakout_tokens(tmp_path_factory, frozen_tokenizer, breakout_ds):
    from scaleworld.models.encode import encode_dataset

    out = tmp_path_factory.mktemp("tokens") / "breakout"
    encode_dataset(tokenizer_dir=frozen_tokenizer, data_dir=breakout_ds, out=out, max_residual=ANY_RESIDUAL,
                   progress=False)
    return out


@pytest.fixture(scope="session")
def pong_tokens(tmp_path_factory, frozen_tokenizer, pong_ds):
    from scaleworld.models.encode import encode_dataset

    out = tmp_path_factory.mktemp("tokens") / "pong"
    encode_dataset(tokenizer_dir=frozen_tokenizer, data_dir=pong_ds, out=out, max_residual=ANY_RESIDUAL, progress=False)
    return out


# The micro study: one game, one size, one seed, every stage at the smallest budget that runs.
MICRO = """
name: micro
games: [Pong]
seeds: [0]
expert: {source: random}
protocol: {max_episode_frames: 400, noop_max: 4}
data: {steps: 240, num_envs: 2, val_fraction: 0.25}
tokenizer: {channels: [8, 8, 8, 8], steps: 4, batch_size: 8, max_residual: 1.0e+6}  # 4 steps describe nothing
models: {ladder: tiny, sizes: [tiny-d1], context: 8}
train: {steps: 6, batch_size: 4, eval_every: 3, checkpoint_every: 3}
modes: {single: true, joint: false, matched: {enabled: false}}
fidelity: {context_steps: 2, horizon: 2, rollouts: 2}
policy: {steps: 2, batch_size: 4, horizon: 2, context_steps: 2, units: 8, layers: 1}
control: {episodes: 1, num_envs: 1, anchor_episodes: 1, upper_anchor: human}
analysis: {bootstrap_reps: 50}
"""

# The referee's confound at micro scale: the micro study's budgets with two games, every mode, the
# data-matched control and a validation split (early stopping's second reading). Run once per session
# on the local executor (`confound_study`); test_confound.py reads it and test_slurm_study.py runs the
# same spec through SLURM against it.
CONFOUND_CHANGES = """
name: confound_micro
games: [Pong, Breakout]
train: {eval_every: 2, validation_fraction: 0.25}
modes: {single: true, joint: true, joint_short: true, matched: {enabled: true, rule: data}}
policy: {modes: [matched]}
"""


def _merged(base: str, changes: str) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(changes)))


CONFOUND = _merged(MICRO, CONFOUND_CHANGES)


@pytest.fixture(scope="session")
def confound_study(tmp_path_factory):
    """(spec path, run root) of the CONFOUND study, finished through the CLI on the local executor."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("confound")
    spec = tmp / "confound.yaml"
    spec.write_text(CONFOUND)
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "run", str(spec), f"run_root={tmp / 'root'}",
                           "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return spec, tmp / "root"

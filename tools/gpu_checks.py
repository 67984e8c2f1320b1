"""GPU checks of imagination and the policy trainer (run where CUDA exists; prints one line each).

1. KV-cache prefill + stepping equals the full forward on CUDA (fp32).
2. The fast path and the TorchRL env give identical trajectories on CUDA (bf16 model). Here and
   in 3 the start windows include an episode's first frames (left-padded, masked prefills).
3. The CUDA-graph rollout (`GraphedRollout(imagination)`, restarts replayed from padded
   bucket graphs) equals `PaddedRestarts` (the eager rollout with its restarts padded the same way:
   the same arithmetic) bitwise, same generator seeds, bf16 model, many restarts, several rollouts
   and a second policy. Against the plain eager rollout (R-row restart prefills: other GEMM shapes,
   which may round bf16 differently in the last bit) it reports the share of identical entries and
   the max abs difference of float entries instead of demanding equality. Also: neither
   `DynamicsModel.step` nor `prefill` makes a host-device sync (skipped where the device is not CUDA).
4. The actor-critic trains on CUDA (bf16 imagination, CUDA-graph rollouts) and learns the
   rewarded action of the hand-built model in tests/handbuilt.py.
5. PPO learns on CUDA (`train_ppo(device=cuda)`: the learner on the GPU, a CPU copy acting): two
   of the three seeds of tests/test_experts_ppo_cartpole.py reach its threshold (on one CPU thread
   all three must), and an Atari run stopped and resumed on CUDA exports an expert that loads and
   plays on the CPU.
6. A tokenizer (version 2, default widths: sampled codes, BatchNorm, bf16 autocast) trains on
   CUDA from real Pong frames and passes the default gate by its held-out record, measured there;
   the saved model measured on the CPU on the same frames agrees with that record.
7. The dynamics trainer step, alone and packed, makes no host-device sync.

Usage: .venv/bin/python tools/gpu_checks.py
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from scaleworld.imagination.config import policy_train_config  # noqa: E402
from scaleworld.imagination.core import Imagination, StartContexts  # noqa: E402
from scaleworld.imagination.env import ImaginationEnv  # noqa: E402
from scaleworld.imagination.graphed import GraphedRollout, PaddedRestarts  # noqa: E402
from scaleworld.imagination.train import train_in_imagination  # noqa: E402
from scaleworld.models.agent import ActorCritic, ActorPolicy, AgentConfig  # noqa: E402
from scaleworld.models.dynamics import DynamicsModel  # noqa: E402
from scaleworld.models.dynamics_config import DynamicsConfig  # noqa: E402
from scaleworld.models.policy_config import PolicyConfig  # noqa: E402
from tests.handbuilt import PAY, RIGHT, action_reward_model, start_contexts  # noqa: E402

cuda = torch.device(os.environ.get("SCALEWORLD_CHECK_DEVICE", "cuda"))


def starts_with_episode_starts() -> StartContexts:
    """Full 4-step windows, and the short ones of an episode's first frames (histories 0, 1, 2)."""
    starts = start_contexts(steps=4)
    short = torch.arange(3)
    return dataclasses.replace(starts, starts=torch.cat([starts.starts, short * 0]),
                               history=torch.cat([starts.history, short])).to(cuda)


def cache_matches_forward() -> str:
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsConfig(width=128, depth=2, heads=4, context=8)).to(cuda).eval()
    latents = torch.randint(0, 32, (4, 20, 32), device=cuda)
    actions = torch.randint(0, 18, (4, 20), device=cuda)
    with torch.no_grad():
        full = model(latents, actions)["hidden"]
        cache = model.new_cache(4)
        first = model.prefill(cache, torch.arange(4, device=cuda), latents[:, :5], actions[:, :5])["hidden"]
        steps = [model.step(cache, latents[:, t], actions[:, t])["hidden"] for t in range(5, 20)]
    err = max((first - full[:, 4:5]).abs().max().item(), (torch.cat(steps, 1) - full[:, 5:]).abs().max().item())
    return f"prefill+step vs forward on cuda: max abs diff {err:.2e} ({'ok' if err < 1e-3 else 'FAIL'})"


def env_matches_fast_path() -> str:
    model = action_reward_model().to(cuda).to(torch.bfloat16)
    with torch.no_grad():
        model.termination_head.bias.fill_(0.0)  # many terminations and restarts
        model.termination_head.weight.normal_(0, 0.3)
    starts = starts_with_episode_starts()
    c = model.config
    torch.manual_seed(1)
    agent = ActorCritic(AgentConfig(groups=c.groups, classes=c.classes, hidden_size=c.width, units=32)).to(cuda)

    def run(wrapped: bool):
        im = Imagination(model, starts, batch=64, generator=torch.Generator(device=cuda).manual_seed(3))
        policy = ActorPolicy(agent, generator=torch.Generator(device=cuda).manual_seed(4))
        if wrapped:
            return ImaginationEnv(im).rollout(10, policy=policy, break_when_any_done=False)
        return im.rollout(policy, 10)

    a, b = run(True), run(False)
    same = all(torch.equal(a[k], b[k]) for k in ("latent", "hidden", "action", ("next", "reward"), ("next", "done")))
    rate = b["next", "terminated"].float().mean().item()
    return (f"env vs fast path on cuda (bf16): identical={same}, terminated share {rate:.2f} "
            f"({'ok' if same else 'FAIL'})")


def graphed_matches_eager() -> str:
    if cuda.type != "cuda":
        return f"graphed vs eager rollout: skipped (CUDA graphs need CUDA, the device is {cuda})"
    model = action_reward_model().to(cuda).to(torch.bfloat16)
    with torch.no_grad():
        model.termination_head.bias.fill_(0.0)  # many terminations and restarts between replays
        model.termination_head.weight.normal_(0, 0.3)
    starts = starts_with_episode_starts()
    c = model.config
    torch.manual_seed(1)
    agent = ActorCritic(AgentConfig(groups=c.groups, classes=c.classes, hidden_size=c.width, units=32)).to(cuda)

    # model.step and prefill must not sync (a graph capture would fail on it): make any sync raise here
    cache = model.new_cache(64)
    zeros = torch.zeros(64, 1, c.groups, dtype=torch.int64, device=cuda)
    with torch.no_grad():
        model.prefill(cache, torch.arange(64, device=cuda), zeros, zeros[..., 0])
    torch.cuda.synchronize()
    rows = torch.arange(3, device=cuda)
    syncs = {}
    for name, call in (("step", lambda: model.step(cache, zeros[:, 0], zeros[:, 0, 0])),
                       ("prefill", lambda: model.prefill(cache, rows, zeros[:3], zeros[:3, :, 0]))):
        torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.no_grad():
                call()
            syncs[name] = "none"
        except RuntimeError as exc:
            syncs[name] = f"FAIL ({str(exc).splitlines()[0]})"
        finally:
            torch.cuda.set_sync_debug_mode(0)

    def run(kind, graphed: bool):
        im = kind(model, starts, batch=64, generator=torch.Generator(device=cuda).manual_seed(3))
        rollouts = GraphedRollout(im) if graphed else im
        policy = ActorPolicy(agent, generator=torch.Generator(device=cuda).manual_seed(4))
        # one capture, then generators, cache and positions go on across rollouts; a new policy recaptures
        tds = [rollouts.rollout(policy, h) for h in (10, 10, 5)]
        tds.append(rollouts.rollout(ActorPolicy(agent, greedy=True), 6))
        return tds, rollouts

    (padded, _), (eager, _), (graphed, rollouts) = (run(PaddedRestarts, False), run(Imagination, False),
                                                    run(Imagination, True))
    captured = rollouts.graph is not None
    buckets = sorted(rollouts.restarts)

    def compare(reference):
        """-> (problems, identical entries / all entries, max abs diff of float entries)"""
        problems, same, total, worst = [], 0, 0, 0.0
        for i, (a, b) in enumerate(zip(reference, graphed)):
            if list(a.keys(True, True)) != list(b.keys(True, True)):
                problems.append(f"rollout {i}: keys differ")
                continue
            for k in a.keys(True, True):
                if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape:
                    problems.append(f"rollout {i} {k}: dtype/shape")
                    continue
                same += (a[k] == b[k]).sum().item()
                total += a[k].numel()
                if a[k].is_floating_point():
                    worst = max(worst, (a[k].float() - b[k].float()).abs().max().item())
        return problems, same / max(total, 1), worst

    problems, share, worst = compare(padded)
    bitwise = not problems and share == 1.0
    eager_problems, eager_share, eager_worst = compare(eager)
    rate = eager[0]["next", "terminated"].float().mean().item()
    verdict = "ok" if bitwise and not eager_problems and captured and set(syncs.values()) == {"none"} else "FAIL"
    return (f"graphed vs eager rollout on cuda (bf16, 4 rollouts, 2 captures, terminated share {rate:.2f}): "
            f"graph captured={captured}, restart buckets {buckets}; vs padded-restart eager: bitwise identical="
            f"{bitwise}" + ("" if bitwise else f" ({'; '.join(problems[:3])} {share:.4%} identical, max abs diff "
                                                f"{worst:.2e})")
            + f"; vs plain eager (not required bitwise: padded prefill GEMMs may round differently): "
            f"{eager_share:.4%} of entries identical, float max abs diff {eager_worst:.2e}"
            + (f" ({'; '.join(eager_problems[:3])})" if eager_problems else "")
            + f"; syncs in model.step: {syncs['step']}, in prefill: {syncs['prefill']} ({verdict})")


def trains_on_cuda() -> str:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        agent, final = train_in_imagination(
            action_reward_model(), start_contexts(), config=PolicyConfig(horizon=8, context_steps=2, units=64,
                                                                         layers=1, gamma=0.9),
            train=policy_train_config(steps=150, batch_size=128, lr=1e-3, eval_every=150, checkpoint_every=150),
            out=out, device=cuda, progress=False)
    seconds = time.perf_counter() - start
    model = action_reward_model().to(cuda).to(torch.bfloat16)
    starts = start_contexts().to(cuda)
    im = Imagination(model, starts, batch=256, generator=torch.Generator(device=cuda).manual_seed(5))
    td = im.rollout(ActorPolicy(agent, greedy=True), 8)
    share = (td["action"] == RIGHT).float().mean().item()
    reward = td["next", "reward"].mean().item()
    return (f"actor-critic on cuda: 150 steps in {seconds:.1f} s, rewarded action share {share:.3f}, "
            f"reward/step {reward:.3f} of {PAY:.3f} ({'ok' if share > 0.95 else 'FAIL'})")


def ppo_learns_on_cuda() -> str:
    import numpy as np

    from scaleworld.experts.anchor import score_expert
    from scaleworld.experts.ppo import PPOConfig, train_ppo
    from scaleworld.experts.tasks import GymTask
    from tests.test_experts_ppo_atari import CONFIG, TASK
    from tests.test_experts_ppo_cartpole import CARTPOLE, THRESHOLD

    start = time.perf_counter()
    last = []  # per seed: mean return of the last 10 episodes
    for seed in range(3):
        with tempfile.TemporaryDirectory() as out:
            result = train_ppo(GymTask(env_id="CartPole-v1"), PPOConfig(seed=seed, **CARTPOLE), out, device=cuda,
                               progress=False)
        last.append(float(np.mean(result.episode_returns[-10:])))
    seconds = (time.perf_counter() - start) / 3
    # the CPU test demands every seed (one thread); other float arithmetic takes other paths: a majority here
    learned = sum(r >= THRESHOLD for r in last) >= 2
    with tempfile.TemporaryDirectory() as out:
        train_ppo(TASK, CONFIG, out, device=cuda, progress=False, stop_after=3)
        resumed = train_ppo(TASK, CONFIG, out, device=cuda, progress=False)
        record = score_expert(out, episodes=2, protocol=TASK.protocol, seed=0)  # loads and plays on the CPU
    ok = learned and resumed.finished and len(record["returns"]) == 2
    return (f"PPO on {cuda}: CartPole {result.updates_done} updates in {seconds:.1f} s a seed, mean return of the "
            f"last 10 episodes {', '.join(f'{r:.0f}' for r in last)} for seeds 0-2 (threshold {THRESHOLD:.0f}, "
            f"2 of 3 must reach it); Atari stop + resume finished={resumed.finished}, "
            f"its expert played {len(record['returns'])} episodes on the CPU ({'ok' if ok else 'FAIL'})")


def tokenizer_trains_on_cuda() -> str:
    from scaleworld.atari.protocol import Protocol
    from scaleworld.data.dataset import OfflineDataset
    from scaleworld.data.sampling import split_episodes
    from scaleworld.models.model_files import load_tokenizer
    from scaleworld.models.tokenizer import TokenizerConfig
    from scaleworld.models.tokenizer_config import MAX_RESIDUAL_FRACTION
    from scaleworld.models.tokenizer_quality import game_quality
    from scaleworld.training.config import TrainConfig
    from scaleworld.training.runs import train_tokenizer
    from tests.conftest import collect

    with tempfile.TemporaryDirectory() as tmp:
        data = collect(os.path.join(tmp, "pong"), game="Pong", steps=2400, seed=3,
                       protocol=Protocol(max_episode_frames=2000, noop_max=8))  # as tests/test_tokenizer_quality.py
        train = TrainConfig(steps=1000, batch_size=64, lr=1e-3, warmup_steps=50, eval_every=250, checkpoint_every=250)
        start = time.perf_counter()
        info = train_tokenizer(data_dirs=[data], out=os.path.join(tmp, "tok"), config=TokenizerConfig(), train=train,
                               val_fraction=0.25, progress=False, device=cuda)
        seconds = time.perf_counter() - start
        on_gpu = info["quality"]["Pong"]
        tokenizer, _ = load_tokenizer(os.path.join(tmp, "tok"))  # on the CPU
        ds = OfflineDataset.open(data)
        _, held_out = split_episodes(len(ds.episode_lengths), val_fraction=0.25, seed=0)
        on_cpu = game_quality(tokenizer, ds, held_out, frames_from="held_out")
    gap = abs(on_cpu["residual_fraction"] - on_gpu["residual_fraction"])
    ok = gap < 0.01 and on_gpu["residual_fraction"] <= MAX_RESIDUAL_FRACTION
    return (f"tokenizer on {cuda}: 1000 steps of batch 64 in {seconds:.1f} s (quality included), held-out residual "
            f"fraction {on_gpu['residual_fraction']:.3f} measured there, {on_cpu['residual_fraction']:.3f} on the CPU, "
            f"perplexity {on_gpu['perplexity_median']:.1f} ({'ok' if ok else 'FAIL'})")


def dynamics_step_does_not_sync() -> str:
    """7. The dynamics trainer step, alone and packed (K = 4), makes no host-device sync (compiled as
    the runs are, batches gathered from rows resident on the GPU); syncs raise here."""
    from scaleworld.models.dynamics import DynamicsModel
    from scaleworld.models.ladders import get_size
    from scaleworld.objectives.world_model import DynamicsLoss
    from scaleworld.study.meter import synthetic_token_windows
    from scaleworld.training.config import TrainConfig
    from scaleworld.training.packed import PackedTrainer
    from scaleworld.training.runs import DynamicsRun
    from scaleworld.training.trainer import Trainer

    config = get_size("paper-d2").config(context=64)
    train = TrainConfig(steps=10**6, batch_size=64)
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        nets = [DynamicsModel(config).to(cuda) for _ in range(4)]
        views = [synthetic_token_windows(config.to_dict(), cuda) for _ in range(4)]
        alone = Trainer(loss=DynamicsLoss(nets[0]), sample_train=views[0].sample, sample_val=None, config=train,
                        run_dir=os.path.join(tmp, "alone"), generators={}, device=cuda, progress=False,
                        compile_on_cuda=True)
        runs = [DynamicsRun(out=Path(tmp) / str(k), net=n, loss=DynamicsLoss(n), train_view=v, val_view=None,
                            generator=torch.Generator(), val_generator=torch.Generator(), identity={}, describe="d2",
                            info={"model": config.to_dict()}, extra={}, keep_best=False)
                for k, (n, v) in enumerate(zip(nets, views))]
        packed = PackedTrainer(runs=runs, configs=[train] * 4, device=cuda, progress=False)
        for name, trainer in (("alone", alone), ("packed", packed)):
            for _ in range(3):  # warm-up and compilation may sync
                trainer.train_step()
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                for _ in range(5):
                    trainer.train_step()
                found[name] = "none"
            except RuntimeError as exc:
                found[name] = f"FAIL ({str(exc).splitlines()[0]})"
            finally:
                torch.cuda.set_sync_debug_mode(0)
            trainer.check_finite()
    return f"dynamics trainer step host syncs on {cuda}: alone {found['alone']}, packed x4 {found['packed']}"


if __name__ == "__main__":
    print(torch.cuda.get_device_name(cuda) if cuda.type == "cuda" else cuda, "torch", torch.__version__)
    for check in (cache_matches_forward, env_matches_fast_path, graphed_matches_eager, trains_on_cuda,
                  ppo_learns_on_cuda, tokenizer_trains_on_cuda, dynamics_step_does_not_sync):
        try:
            print(check(), flush=True)
        except Exception as exc:  # report and go on: one run of this script must say everything
            print(f"{check.__name__}: FAILED {type(exc).__name__}: {exc}", flush=True)

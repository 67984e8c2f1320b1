"""Benchmark imagination: imagined frames/s of the fast path (eager, CUDA-graphed) and the TorchRL wrapper.

All paths roll out `batch` rollouts for `horizon` steps from real-sized start contexts (random
tokens: throughput does not depend on the data) under the same actor (an `ActorPolicy` of the
default agent size), with the same generator seeds, so they do identical work. Frames/s counts
imagined transitions (batch x horizon) per second of a whole rollout, including its start
(prefilling context_steps - 1 tokens per rollout) and the policy. Each end restarts its row from a
new context, as in training. A step ends where the termination logit is > 0 (no sampling); with the
random paper-d2 weights that logit is roughly N(bias + 0.06, 0.41^2), so the termination head's
bias sets the share of ending steps (printed as measured). The default, -1.35, makes about 0.1% of
steps end (measured 0.10% over 64k steps on CPU): Atari 100k episodes last on the order of 1,000
agent steps, so that is the realistic rate, and at batch 1024 it means about one restart per
imagined step. --termination-bias -5 makes hardly any rollout end (uninterrupted rollouts: the
upper bound), -1.1 about 0.5% of steps (several restarts every step).

The eager fast path builds a new `Imagination` per rollout; the CUDA-graph line (CUDA only:
`GraphedRollout(imagination)`) reuses one and reseeds its generators, as training does,
since the graph is captured once per imagination and policy (the capture is timed on its own, with
the restart graphs of the row counts the first rollout needs; one for a row count first met later
is captured inside the warm-up or, rarely, a timed rollout).

Usage: .venv/bin/python tools/bench_imagination.py [--size paper-d2] [--batch 1024] [--horizon 16]
On a GPU: --device cuda (the model imagines in bf16, as `train_in_imagination` does).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402

from scaleworld.imagination.core import Imagination, StartContexts  # noqa: E402
from scaleworld.imagination.env import ImaginationEnv  # noqa: E402
from scaleworld.imagination.graphed import GraphedRollout  # noqa: E402
from scaleworld.models.agent import ActorCritic, ActorPolicy, AgentConfig  # noqa: E402
from scaleworld.models.dynamics import DynamicsModel  # noqa: E402
from scaleworld.models.ladders import get_size  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(size: str, *, context: int, context_steps: int, device: torch.device, termination_bias: float = -1.35):
    torch.manual_seed(0)
    model = DynamicsModel(get_size(size).config(context=context)).to(device).eval().requires_grad_(False)
    with torch.no_grad():
        model.termination_head.bias.fill_(termination_bias)  # ends where the logit is > 0: see the docstring
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    c = model.config
    rows = 4096
    gen = torch.Generator().manual_seed(1)
    starts = StartContexts(tokens=torch.randint(0, c.classes, (rows, c.groups), generator=gen, dtype=torch.uint8),
                           actions=torch.randint(0, 18, (rows,), generator=gen), steps=context_steps,
                           starts=torch.arange(rows - context_steps + 1), game=None,
                           action_mask=torch.ones(18, dtype=torch.bool))
    starts = starts.to(device)
    agent = ActorCritic(AgentConfig(groups=c.groups, classes=c.classes, hidden_size=c.width)).to(device).eval()
    return model, starts, agent


def time_rollouts(run, *, repeats: int, device: torch.device) -> float:
    run()  # warm-up (allocations, kernels)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def time_once(run, *, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="paper-d2", help="a ladder size (default paper-d2: width 512, depth 2)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--context", type=int, default=64, help="the model's attention window")
    parser.add_argument("--context-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--termination-bias", type=float, default=-1.35,
                        help="the termination head's bias (default -1.35: ~0.1%% of steps end, as in Atari 100k; "
                             "-5: hardly any; -1.1: ~0.5%%)")
    args = parser.parse_args()
    device = torch.device(args.device)
    model, starts, agent = build(args.size, context=args.context, context_steps=args.context_steps, device=device,
                                 termination_bias=args.termination_bias)
    frames = args.batch * args.horizon

    # Each path gets one imagination and policy, reused by all its rollouts (a graph belongs to
    # them; the KV cache is allocated once) and reseeded before each rollout: the same work per rollout.
    def reseeded(horizon=args.horizon):
        # as train_in_imagination makes it (a KV cache of context_steps - 1 + horizon slots); the env's: any horizon
        imagination = Imagination(model, starts, batch=args.batch, generator=torch.Generator(device=device),
                                  horizon=horizon)
        policy = ActorPolicy(agent, generator=torch.Generator(device=device))
        seed = [0]

        def next_seed():
            seed[0] += 1
            imagination.generator.manual_seed(seed[0])
            policy.generator.manual_seed(seed[0])

        return imagination, policy, next_seed

    fast_imagination, fast_policy, fast_seed = reseeded()
    env_imagination, env_policy, env_seed = reseeded(horizon=None)
    env = ImaginationEnv(env_imagination)
    graphed_imagination, graphed_policy, graphed_seed = reseeded()
    graphed_rollouts = None  # built on CUDA only, inside the try below: a failure there is reported

    def fast_run():
        fast_seed()
        return fast_imagination.rollout(fast_policy, args.horizon)

    def env_run():
        env_seed()
        return env.rollout(args.horizon, policy=env_policy, break_when_any_done=False)

    def graphed_run():
        graphed_seed()
        return graphed_rollouts.rollout(graphed_policy, args.horizon)

    fast = time_rollouts(fast_run, repeats=args.repeats, device=device)
    terminated = fast_run()["next", "terminated"]
    ended = terminated.float().mean().item()
    graphed = capture = None
    graph_note = "not measured (CUDA only)"
    if device.type == "cuda":
        try:  # a failed capture is reported, and the other lines are still measured
            graphed_rollouts = GraphedRollout(graphed_imagination)
            capture = time_once(graphed_run, device=device)  # the first rollout captures the graph
            graphed = time_rollouts(graphed_run, repeats=args.repeats, device=device)
        except Exception as exc:
            graph_note = f"FAILED {type(exc).__name__}: {exc}"
    wrapped = time_rollouts(env_run, repeats=args.repeats, device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"imagination, {args.size} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params), "
          f"batch {args.batch} x horizon {args.horizon}, context_steps {args.context_steps}, {name}, "
          f"{ended:.2%} of steps end ({int(terminated.sum())} of {terminated.numel():,})")
    print(f"  fast path (Imagination.rollout):      {frames / fast:12,.0f} imagined frames/s  "
          f"({fast * 1e3:.1f} ms per rollout)")
    if graphed is not None:
        print(f"  fast path, CUDA graph (GraphedRollout): {frames / graphed:9,.0f} imagined frames/s  "
              f"({graphed * 1e3:.1f} ms per rollout; capture + first rollout {capture * 1e3:.0f} ms)")
    else:
        print(f"  fast path, CUDA graph (GraphedRollout): {graph_note}")
    print(f"  TorchRL ImaginationEnv.rollout:       {frames / wrapped:12,.0f} imagined frames/s  "
          f"({wrapped * 1e3:.1f} ms per rollout)")
    print(f"  wrapper / fast path throughput ratio: {fast / wrapped:.3f}x")
    if graphed is not None:
        print(f"  graphed / eager fast path throughput ratio: {fast / graphed:.3f}x")


if __name__ == "__main__":
    main()

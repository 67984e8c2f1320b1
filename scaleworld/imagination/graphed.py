"""CUDA-graph mode of `Imagination.rollout` (``Imagination(..., cuda_graph=True)``): one graph per step.

Why: at batch 1024 an eager paper-d2 step is ~140 small kernels, and launching them (Python,
PyTorch dispatch, the CUDA driver) takes the CPU about four times longer than the GPU needs to
run them, so the eager rollout is launch-bound. Here one imagined step -- policy(observation) ->
action, the dynamics model's step through the KV cache, the sampled next latent, reward and
termination -- is captured once as a CUDA graph and replayed `horizon` times: one launch a step.

A graph replays fixed kernels on fixed memory, so everything a replay touches is static:

- inputs: `GraphedRollout.latent` int64 [B, groups] and `.hidden` float32 [B, width] (the state
  acted from), the imagination's `action_mask` bool [B, 18] and `game` [B], and the KV cache
  (`k`, `v`, `start`, `pos`); all written only in place. `DynamicsModel.step` reads the position
  from the device scalar `cache.pos` (not the Python int), so one graph is right at every position.
- outputs: the tensors the captured step returned, in the graph's private memory, which every
  replay overwrites: the policy's entries ("action", "logits") and the next latent, hidden,
  reward and termination.

Between replays, eager code: the step's record is cloned out (the returned TensorDict holds
copies, never the static buffers), the next state is copied into the inputs, and terminated rows
restart from new real contexts (`Imagination.restart`: a dynamic number of rows, found with
`nonzero`, prefilled into the same cache and written into the same input buffers).

Randomness: the imagination's and the policy's generators are registered with the graph
(`CUDAGraph.register_generator_state`, torch >= 2.4): a replay reads the generator's seed and
offset when it is launched and advances the offset as much as the eager step would. Replays thus
draw fresh numbers, eager resets between them go on from the right offset, and a graphed rollout
equals the eager one for the same generator states (tools/gpu_checks.py checks that on a GPU;
tests/test_imagination_graph.py checks the bookkeeping on CPU with `replay_eagerly`).
"""

from __future__ import annotations

import contextlib

import torch
from tensordict import TensorDict

from scaleworld.errors import ScaleworldError
from scaleworld.imagination.core import Imagination, Policy

WARMUP_STEPS = 3
"""Eager steps on a side stream before capture, as PyTorch's recipe asks (lazy initialisation,
cuBLAS workspaces and the like must not happen during capture)."""


class GraphedRollout:
    """`Imagination.rollout` with every imagined step replayed from one captured CUDA graph.

    The graph is captured on the first rollout and again whenever a different policy object is
    passed (the batch is fixed: it is the imagination's). Between rollouts the policy's
    parameters may change in place (an optimiser step): the graph reads them where they are. They
    must not be replaced by new tensors, nor may the policy's Python settings (e.g. `greedy`) change.
    The policy's randomness must come from `policy.generator` (a CUDA generator) or be greedy; a
    generator it uses without exposing it there cannot be registered, and the capture fails.

    replay_eagerly=True (tests on CPU) runs the same bookkeeping with no graph: "capture" runs the
    step once, and each "replay" runs it again and copies its results into the captured outputs,
    which is what a real replay does to them.
    """

    def __init__(self, imagination: Imagination, *, replay_eagerly: bool = False):
        if imagination.device.type != "cuda" and not replay_eagerly:
            raise ScaleworldError(f"CUDA graphs need a model on a CUDA device, not {imagination.device}: "
                                  "use the eager rollout (Imagination without cuda_graph)")
        self.imagination = imagination
        self.replay_eagerly = replay_eagerly
        # the captured step's inputs (the state acted from), written in place between replays
        self.latent = torch.zeros_like(imagination.latent)  # int64 [B, groups]
        self.hidden = torch.zeros_like(imagination.hidden)  # float32 [B, width]
        self.policy: Policy | None = None  # the policy the graph was captured with
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: dict = {}  # the captured step's record: TorchRL key -> static tensor [B, ...]

    def _device(self):
        im = self.imagination
        return torch.cuda.device(im.device) if im.device.type == "cuda" else contextlib.nullcontext()

    def _step(self) -> dict:
        """One imagined step from the static inputs, by the eager rollout's own code. Returns the
        record by TorchRL key: the policy's TensorDict entries [B, ...] (the state acted from,
        "action", "logits") and ("next", "latent"/"hidden") [B, ...], ("next", "reward"/"terminated") [B, 1]."""
        im = self.imagination
        im.latent, im.hidden = self.latent, self.hidden
        position = im.cache.position
        td = self.policy(im.observation())
        reward, terminated = im.step(td["action"])
        record = {key: td.get(key) for key in td.keys(include_nested=True, leaves_only=True)}
        record.update({("next", "latent"): im.latent, ("next", "hidden"): im.hidden,
                       ("next", "reward"): reward[:, None], ("next", "terminated"): terminated[:, None]})
        # Keep the step's Python side effects out: a replay repeats only the device work. rollout()
        # advances the Python `position` after each replay (`pos`, on the device, is advanced by the
        # graph), and the imagination's state stays the static inputs.
        im.cache.position = position
        im.latent, im.hidden = self.latent, self.hidden
        return record

    def _capture(self, policy: Policy) -> None:
        im = self.imagination
        self.policy, self.graph, self.outputs = policy, None, {}  # drop an old graph first: frees its memory
        generators = [im.generator]
        policy_generator = getattr(policy, "generator", None)
        if policy_generator is not None and policy_generator is not im.generator:
            generators.append(policy_generator)
        # Warm-up steps draw random numbers (capture only records its draws): give the generators
        # their states back afterwards, so the rollout draws exactly what the eager one would.
        saved = [g.get_state() for g in generators]
        try:
            if self.replay_eagerly:
                for _ in range(WARMUP_STEPS):
                    self._step()
                self.outputs = self._step()
                return
            for g in generators:
                if g.device.type != "cuda":
                    raise ScaleworldError(f"a CUDA graph can only replay CUDA generators, not one on {g.device}")
            if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
                raise ScaleworldError(f"graphs with explicit generators need torch >= 2.4, not {torch.__version__}")
            current = torch.cuda.current_stream()
            side = torch.cuda.Stream()
            side.wait_stream(current)  # the static inputs were written on the current stream
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self._step()
            current.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            for g in generators:  # before capture: a replay then reads and advances their states
                graph.register_generator_state(g)
            # Capture on the warm-up stream (its cuBLAS workspace exists already). thread_local: only this
            # thread must not make unsafe CUDA calls meanwhile (another thread's, e.g. a logger's, would
            # otherwise break the capture).
            with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                self.outputs = self._step()
            self.graph = graph
        except BaseException:
            self.policy, self.graph, self.outputs = None, None, {}  # capture again next time
            raise
        finally:
            for g, state in zip(generators, saved):
                g.set_state(state)

    def _replay(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        fresh = self._step()  # replay_eagerly: the same work, its results written where a replay writes
        for key, static in self.outputs.items():
            if fresh[key].data_ptr() != static.data_ptr():  # not the inputs themselves (latent, hidden, mask)
                static.copy_(fresh[key])

    @torch.no_grad()
    def rollout(self, policy: Policy, horizon: int) -> TensorDict:
        """What `Imagination.rollout` returns (the same keys, values and layout), from graph replays."""
        im = self.imagination
        with self._device():
            if policy is not self.policy:
                self._capture(policy)
            im.reset()  # eager: every row from a new real context (new im.latent/hidden tensors)
            self.latent.copy_(im.latent)
            self.hidden.copy_(im.hidden)
            out = self.outputs
            steps: dict = {key: [] for key in out}
            for t in range(horizon):
                self._replay()
                im.cache.position += 1  # the replay advanced cache.pos; eager prefill reads the Python int
                for key, value in out.items():
                    steps[key].append(value.clone())  # copies: the next replay overwrites `value`
                if t < horizon - 1:
                    self.latent.copy_(out["next", "latent"])
                    self.hidden.copy_(out["next", "hidden"])
                    # the one host sync of a step: how many rows ended (the eager rollout has it too)
                    index = out["next", "terminated"][:, 0].nonzero().squeeze(-1)
                    if len(index):
                        latent, hidden = im.restart(index)
                        self.latent[index] = latent
                        self.hidden[index] = hidden
            # leave the imagination as the eager rollout does: at the state after the last step
            im.latent, im.hidden = out["next", "latent"].clone(), out["next", "hidden"].clone()
        return self._stack(steps, horizon)

    def _stack(self, steps: dict, horizon: int) -> TensorDict:
        """Per-step copies -> TensorDict [B, horizon] in the eager rollout's layout and key order."""
        im = self.imagination
        stacked = {key: torch.stack(values, dim=1) for key, values in steps.items()}
        td = TensorDict({}, batch_size=[im.batch, horizon], device=im.device)
        for key, value in stacked.items():
            if not (isinstance(key, tuple) and key[0] == "next"):  # the policy's TensorDict: root keys
                td.set(key, value)
        terminated = stacked["next", "terminated"]  # bool [B, horizon, 1]
        for name, value in (("latent", stacked["next", "latent"]), ("hidden", stacked["next", "hidden"]),
                            ("action_mask", im.action_mask[:, None].expand(-1, horizon, -1).clone()),
                            ("reward", stacked["next", "reward"]), ("terminated", terminated),
                            ("truncated", torch.zeros_like(terminated)), ("done", terminated.clone())):
            td.set(("next", name), value)
        return td

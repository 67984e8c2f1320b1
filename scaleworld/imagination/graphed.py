"""CUDA-graph mode of `Imagination.rollout` (``GraphedRollout(imagination).rollout``): one graph per step,
a few for restarts.

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
restart from new real contexts.

Restarts are graphed too. Eagerly, restarting R rows (`Imagination.restart`: window gather and a
prefill of context_steps - 1 tokens through the model) is ~150 kernel launches, 2-3 ms of CPU for
a few rows, and with realistic termination rates nearly every step has some: that would cost more
than the graphed step itself. So a restart graph is captured per bucket of row counts (powers of
two, at most the batch; each captured the first time it is needed) and replayed with the R rows'
indices and window picks copied into its static buffers `index`/`picks` int64 [bucket], padded by
repeating the first real row with its pick (that row is then restarted twice from the same window:
the same values written twice). Per restart, eager code only finds the rows (`nonzero`: the one
host sync of a step, which the eager rollout has too), draws the picks with the imagination's
generator exactly as the eager `restart` draws them (`Imagination.draw_picks`, so both modes use the
same random numbers), and copies them in. The prefill reads its positions from `cache.pos`, so a
restart graph is right at every position. The rollout's first reset of all rows is the bucket of
the whole batch. On a GPU a padded bucket's prefill runs GEMMs of another shape than an R-row
prefill, which may round results differently in the last bit (CPU BLAS does too): graphed and
eager rollouts are then close, not bitwise equal. `PaddedRestarts` is the eager rollout with its
restarts padded the same way, the same arithmetic: graphed rollouts equal it exactly
(tests/test_imagination_graph.py on CPU with `replay_eagerly`, tools/gpu_checks.py on a GPU).

Randomness: the imagination's and the policy's generators are registered with the graph
(`CUDAGraph.register_generator_state`, torch >= 2.4): a replay reads the generator's seed and
offset when it is launched and advances the offset as much as the eager step would. Replays thus
draw fresh numbers, eager resets between them go on from the right offset, and a graphed rollout
equals the eager one for the same generator states (tools/gpu_checks.py checks that on a GPU;
tests/test_imagination_graph.py checks the bookkeeping on CPU with `replay_eagerly`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from tensordict import TensorDict

from scaleworld.data.collect import Policy
from scaleworld.errors import ScaleworldError
from scaleworld.imagination.core import Imagination

WARMUP_STEPS = 3
"""Eager steps on a side stream before capture, as PyTorch's recipe asks (lazy initialisation,
cuBLAS workspaces and the like must not happen during capture)."""


def bucket(rows: int, batch: int) -> int:
    """The restart graph size for `rows` (>= 1) restarting rows: the next power of two, at most the batch."""
    return min(1 << (rows - 1).bit_length(), batch)


class PaddedRestarts(Imagination):
    """The eager `Imagination` with every restart padded to its bucket as the restart graphs pad it
    (the first row and its pick repeated; the results' first R rows returned): the same draws and
    the same GEMM shapes, hence bitwise the results of a graphed rollout. A reference for checks."""

    @torch.no_grad()
    def restart(self, index: torch.Tensor, picks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = len(index)
        if picks is None:
            picks = self.draw_picks(rows)
        pad = bucket(rows, self.batch) - rows
        latent, hidden = super().restart(torch.cat((index, index[:1].expand(pad))),
                                         torch.cat((picks, picks[:1].expand(pad))))
        return latent[:rows], hidden[:rows]


@dataclass
class RestartGraph:
    """The captured restart of one bucket of rows: its static inputs and graph."""

    index: torch.Tensor
    """int64 [bucket]: the rows to restart (padded by repeating the first)."""
    picks: torch.Tensor
    """int64 [bucket]: their start windows (the padding repeats the first row's pick)."""
    graph: torch.cuda.CUDAGraph | None = None
    """None with replay_eagerly: a "replay" then runs the restart eagerly from the buffers."""


class GraphedRollout:
    """`Imagination.rollout` with every imagined step replayed from one captured CUDA graph, and
    restarts from one graph per bucket of row counts (`restarts`; see the module docstring).

    The step graph is captured on the first rollout and again whenever a different policy object is
    passed (the batch is fixed: it is the imagination's). Between rollouts the policy's
    parameters may change in place (an optimiser step): the graph reads them where they are. They
    must not be replaced by new tensors, nor may the policy's Python settings (e.g. `greedy`) change.
    The policy's randomness must come from `policy.generator` (a CUDA generator) or be greedy; a
    generator it uses without exposing it there cannot be registered, and the capture fails.

    replay_eagerly=True (tests on CPU) runs the same bookkeeping with no graph: "capture" runs the
    step once, and each "replay" runs it again and copies its results into the captured outputs,
    which is what a real replay does to them; a restart "replay" runs the padded restart eagerly.
    The restart graphs also read the imagination's start contexts and `game` where they are.
    """

    def __init__(self, imagination: Imagination, *, replay_eagerly: bool = False):
        if imagination.device.type != "cuda" and not replay_eagerly:
            raise ScaleworldError(f"CUDA graphs need a model on a CUDA device, not {imagination.device}: "
                                  "use the eager rollout (Imagination.rollout)")
        self.imagination = imagination
        self.replay_eagerly = replay_eagerly
        # the captured step's inputs (the state acted from), written in place between replays
        self.latent = torch.zeros_like(imagination.latent)  # int64 [B, groups]
        self.hidden = torch.zeros_like(imagination.hidden)  # float32 [B, width]
        self.policy: Policy | None = None  # the policy the graph was captured with
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: dict = {}  # the captured step's record: TorchRL key -> static tensor [B, ...]
        # restart graphs by bucket size; they do not depend on the policy, so a recapture keeps them
        self.restarts: dict[int, RestartGraph] = {}
        self._restart_pool = None  # one memory pool for all restart graphs: they only hold temporaries
        self._all_rows = torch.arange(imagination.batch, device=imagination.device)  # int64 [B]

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

    def _restart_rows(self, index: torch.Tensor, picks: torch.Tensor) -> None:
        """What a restart graph runs: rows `index` from windows `picks` (int64 [n] each) into the
        cache and the static inputs. No draw, no sync, positions from `cache.pos`; running it again
        with the same buffers writes the same values again (the warm-up relies on that)."""
        latent, hidden = self.imagination.restart(index, picks)  # [n, groups], [n, width]
        self.latent[index] = latent
        self.hidden[index] = hidden

    def _restart(self, index: torch.Tensor) -> None:
        """Restart rows `index` (int64 [R], R >= 1) as `Imagination.reset` would, from a restart graph."""
        im = self.imagination
        rows = len(index)
        picks = im.draw_picks(rows)  # eager: exactly the eager restart's draw (same generator, same offset)
        size = bucket(rows, im.batch)
        restart = self.restarts.get(size)
        if restart is None:
            empty = torch.empty(size, dtype=torch.int64, device=im.device)
            restart = RestartGraph(index=empty, picks=empty.clone())
        # pad to the bucket with the first real row and its pick: [R] real + [size - R] repeats
        restart.index[:rows].copy_(index)
        restart.index[rows:].copy_(index[:1].expand(size - rows))
        restart.picks[:rows].copy_(picks)
        restart.picks[rows:].copy_(picks[:1].expand(size - rows))
        if size not in self.restarts:
            self._capture_restart(restart)  # the first time this bucket is needed
            self.restarts[size] = restart
        if restart.graph is not None:
            restart.graph.replay()
        else:  # replay_eagerly
            self._restart_rows(restart.index, restart.picks)

    def _capture_restart(self, restart: RestartGraph) -> None:
        if self.replay_eagerly:
            return
        current = torch.cuda.current_stream()
        side = torch.cuda.Stream()
        side.wait_stream(current)  # the buffers were filled on the current stream
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):  # the real restart, run eagerly: the replay writes the same again
                self._restart_rows(restart.index, restart.picks)
        current.wait_stream(side)
        if self._restart_pool is None:
            # Safe to share: restart graphs replay one at a time on one stream and leave nothing in
            # the pool that outlives a replay (their results go into the cache and the static inputs).
            self._restart_pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._restart_pool, stream=side, capture_error_mode="thread_local"):
            self._restart_rows(restart.index, restart.picks)
        restart.graph = graph

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
        im.check_horizon(horizon)
        with self._device():
            if policy is not self.policy:
                self._capture(policy)
            # every row from a new real context, as `Imagination.reset()` does: on the emptied cache
            # the shared position becomes context_steps - 1 (what prefill does on a fresh cache, done
            # here eagerly so that the graph reads it from `cache.pos`), then the whole batch's bucket
            im.cache.reset()
            im.cache.set_position(im.starts.steps - 1)
            self._restart(self._all_rows)
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
                    index = out["next", "terminated"][:, 0].nonzero().squeeze(-1)  # int64 [R]
                    if len(index):
                        self._restart(index)
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

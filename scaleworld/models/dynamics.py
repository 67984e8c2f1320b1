"""The dynamics transformer: GPT-style, pre-norm, causal, ONE token per time step.

Token t = embedding of the latent z_t (32 categorical variables) + embedding of the action a_t
(+ the game's embedding in joint mode). From the output at t the heads predict z_{t+1}
(32 categoricals), the reward r_t (two-hot over symlog bins) and whether the episode ended at t.

Attention uses rotary position embeddings and a sliding window of `context` tokens: token i
attends to tokens i-context+1 .. i. With sequences no longer than `context` (training) this is
plain causal attention. The window is what makes the KV cache exact: when stepping one token at a
time past `context` tokens, the cache evicts the oldest token (a ring buffer), and because rotary
keys carry their absolute position, the result equals the full forward with the same window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaleworld.models.dynamics_config import DynamicsConfig


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on [B, H, T, D] with cos/sin [T, D/2] (pairs are the two halves of D), cos/sin
    already in x's dtype (`activation_dtype`: cast once per pass, not twice per block)."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


def activation_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a Linear's output has for input x: autocast's (bf16 on CUDA in training) or x's."""
    kind = x.device.type
    if torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def latent_embedding(codes: torch.Tensor, weight: torch.Tensor, *, by_matmul: bool) -> torch.Tensor:
    """Sum over the groups of the codes' rows of `weight`: codes int64 [..., G] (already offset by
    group: values in 0..G*C-1), weight [G*C, width] -> [..., width].

    by_matmul (what the model uses): as a multi-hot [..., G*C] (G ones a row) times `weight`. The
    same sum (by_matmul=False, the lookup, is its definition: tests check one against the other), but
    the backward is a GEMM (multi-hot^T @ grad) where the lookup's is a scatter of G adds per token
    into the table: on a GPU, compiled, ~67M atomic adds a step at batch 64 x 64 into a 1024 x 512
    table; on this repository's 2-core CPU the lookup's forward + backward at 8 x 64 tokens took
    37.8 ms, the multi-hot's 8.5 ms. Under CUDA's bf16 autocast the product is a bf16 GEMM like every
    Linear's (the table's rows rounded to bf16 in the sum, ~2e-3 relative to the fp32 lookup; the
    weights and their updates stay fp32), where the lookup kept the sum in fp32.
    """
    if not by_matmul:
        return F.embedding(codes, weight).sum(-2)
    # [..., G*C], exact 0/1, so the product sums the G rows; out of place, as vmap (packed runs) needs
    empty = torch.zeros(*codes.shape[:-1], weight.shape[0], dtype=weight.dtype, device=codes.device)
    return empty.scatter(-1, codes, torch.ones_like(codes, dtype=weight.dtype)) @ weight


class RotaryAngles(nn.Module):
    """cos/sin of the rotary angles, always computed in float32 (also in a bf16 model: angles of
    positions in the thousands need float32's precision), then cast to `dtype` (the activations',
    `activation_dtype`: once per pass, not twice per block). The D/2 inverse frequencies are
    recomputed each call (three tiny kernels, folded away when compiled): not a buffer, which
    model.to(bf16) would round, and not a per-device cache, whose first filling inside a compiled
    step changed what dynamo guards on and compiled every run twice."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.head_dim = head_dim
        self.base = base

    def forward(self, positions: torch.Tensor, *, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        steps = torch.arange(0, self.head_dim, 2, device=positions.device, dtype=torch.float32)
        inv_freq = self.base ** (-steps / self.head_dim)  # [D/2]
        angles = positions.float()[:, None] * inv_freq[None, :]  # [T, D/2]
        return angles.cos().to(dtype), angles.sin().to(dtype)


class KVCache:
    """Preallocated keys/values for stepping: [depth, B, heads, context, head_dim] each.

    Token at absolute position p is written to slot p % context (the oldest is evicted once the
    window is full). Attention over the slots needs no ordering because rotary keys already encode
    positions. Every row has its own history: `start` int64 [B] is the absolute position of the
    row's first token, so one row can begin a new episode (`DynamicsModel.prefill`) while the
    others go on; a mask hides slots holding tokens from before `start` or not yet written.

    The position of the next token (shared by all rows) is kept twice: `position`, a Python int
    for the eager code (`reset`, `prefill`'s fresh-cache check), and `pos`, the same value as an
    int64 scalar tensor on the cache's device, which is all `DynamicsModel.step` and `prefill`
    compute positions from. A step or prefill thus never copies a Python number to the device (no
    sync), and a CUDA graph of it stays right when replayed at later positions (see
    scaleworld/imagination/graphed.py, which advances `position` per replay).
    The tensors here are only ever written in place, never replaced: a captured graph holds them.

    `length` (default: the model's context) fewer slots than the window, for a user that knows no
    row's history will exceed it (an imagined rollout: context_steps - 1 + horizon tokens): every
    token a row may attend to is still held, so steps compute what a full cache gives, and each
    step reads length, not context, slots per layer (imagination's largest memory read).
    """

    def __init__(self, config: DynamicsConfig, batch: int, *, device=None, dtype=torch.float32,
                 length: int | None = None):
        length = config.context if length is None else length
        if not 1 <= length <= config.context:
            raise ValueError(f"a KV cache of {length} slots: at least 1, at most the context ({config.context})")
        hd = config.width // config.heads
        shape = (config.depth, batch, config.heads, length, hd)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.context = length  # slots a row keeps: the model's window, or fewer (`length`)
        self.position = 0  # absolute position of the next token (shared by all rows)
        self.pos = torch.zeros((), dtype=torch.int64, device=device)  # == position, on the device
        self.start = torch.zeros(batch, dtype=torch.int64, device=device)
        self._slots = torch.arange(length, device=device)

    def reset(self) -> None:
        self.set_position(0)
        self.start.zero_()

    def set_position(self, position: int) -> None:
        """Move both copies of the position (eager code only: fill_ launches a kernel, no sync)."""
        self.position = position
        self.pos.fill_(position)

    def valid(self) -> torch.Tensor:
        """bool [B, context]: which slots belong to each row's history once the token at
        `pos` is written (slot s then holds position p(s) = pos - (pos - s) % context)."""
        held = self.pos - (self.pos - self._slots) % self.context  # int64 [context]
        return held[None, :] >= self.start[:, None]  # start >= 0: never-written slots (held < 0) stay masked


class Block(nn.Module):
    def __init__(self, c: DynamicsConfig):
        super().__init__()
        self.heads = c.heads
        self.norm1 = nn.LayerNorm(c.width)
        self.qkv = nn.Linear(c.width, 3 * c.width)
        self.proj = nn.Linear(c.width, c.width)
        self.norm2 = nn.LayerNorm(c.width)
        self.mlp = nn.Sequential(
            nn.Linear(c.width, c.ffn_mult * c.width), nn.GELU(), nn.Linear(c.ffn_mult * c.width, c.width)
        )

    def _qkv(self, x, cos, sin):
        b, t, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v  # each [B, H, T, D]

    def _finish(self, x, attn):
        b, h, t, d = attn.shape
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, h * d))
        return x + self.mlp(self.norm2(x))

    @staticmethod
    def attend(q, k, v, mask):
        """Causal attention over [B, H, T, D]; mask (bool, broadcast to [B, H, T, T]) replaces causal when given."""
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def forward(self, x, cos, sin, mask):
        q, k, v = self._qkv(x, cos, sin)
        return self._finish(x, self.attend(q, k, v, mask))

    def step(self, x, cos, sin, cache: KVCache, layer: int, slot: torch.Tensor, mask: torch.Tensor):
        """x [B, 1, width]; slot int64 [1] (a device index: the new token's ring-buffer slot);
        mask bool [B, 1, 1, context] (`KVCache.valid`, computed once per step for all layers)."""
        q, k, v = self._qkv(x, cos, sin)  # [B, H, 1, D]
        # index_copy_ along the slot dim of [B, H, context, D] with the index on the device: no Python int
        cache.k[layer].index_copy_(2, slot, k.to(cache.k.dtype))
        cache.v[layer].index_copy_(2, slot, v.to(cache.v.dtype))
        attn = F.scaled_dot_product_attention(q, cache.k[layer], cache.v[layer], attn_mask=mask)
        return self._finish(x, attn)


class DynamicsModel(nn.Module):
    def __init__(self, config: DynamicsConfig):
        super().__init__()
        self.config = c = config
        self.latent_embed = nn.Embedding(c.groups * c.classes, c.width)  # summed over the 32 groups
        self.action_embed = nn.Embedding(c.num_actions, c.width)
        self.game_embed = nn.Embedding(len(c.games), c.width) if c.games else None
        self.rotary = RotaryAngles(c.width // c.heads)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.width)
        self.latent_head = nn.Linear(c.width, c.groups * c.classes)
        self.reward_head = nn.Linear(c.width, c.reward_bins)
        self.termination_head = nn.Linear(c.width, 1)
        self.register_buffer("_group_offset", torch.arange(c.groups) * c.classes, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c.depth))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def embed(self, latents: torch.Tensor, actions: torch.Tensor, game: torch.Tensor | None) -> torch.Tensor:
        """latents int [B, T, groups], actions int [B, T], game int [B, T] -> tokens [B, T, width]."""
        codes = latents.long() + self._group_offset  # [B, T, groups] rows of the table
        x = latent_embedding(codes, self.latent_embed.weight, by_matmul=True)
        x = x + self.action_embed(actions.long())
        if self.game_embed is not None:
            if game is None:
                raise ValueError("a joint model needs the game index of every token")
            x = x + self.game_embed(game.long())
        return x

    def heads(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        return {
            "hidden": hidden,  # [B, T, width] (what an actor-critic reads)
            "latent_logits": self.latent_head(hidden).unflatten(-1, (c.groups, c.classes)),  # [B, T, G, C]
            "reward_logits": self.reward_head(hidden),  # [B, T, bins]
            "termination_logits": self.termination_head(hidden).squeeze(-1),  # [B, T]
        }

    def _window_mask(self, t: int, device) -> torch.Tensor | None:
        if t <= self.config.context:
            return None  # plain causal
        i = torch.arange(t, device=device)
        return (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - self.config.context)

    def forward(self, latents, actions, game=None) -> dict[str, torch.Tensor]:
        """Full causal pass over [B, T] tokens (T may exceed `context`: sliding window)."""
        x = self.embed(latents, actions, game)
        t = x.shape[1]
        cos, sin = self.rotary(torch.arange(t, device=x.device), dtype=activation_dtype(x))
        mask = self._window_mask(t, x.device)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.heads(self.norm(x))

    def new_cache(self, batch: int, *, length: int | None = None) -> KVCache:
        """A KVCache of `batch` rows on the model's device and dtype (`length`: see KVCache)."""
        p = next(self.parameters())
        return KVCache(self.config, batch, device=p.device, dtype=p.dtype, length=length)

    def step(self, cache: KVCache, latents, actions, game=None) -> dict[str, torch.Tensor]:
        """One token per sequence: latents [B, groups], actions [B] (game [B]) -> heads at [B, 1, ...]."""
        x = self.embed(latents[:, None], actions[:, None], None if game is None else game[:, None])
        # Everything position-dependent reads the device scalar `cache.pos`, never the Python int: no
        # host-to-device copy (so no sync), and a CUDA graph of this step is right at every position.
        cos, sin = self.rotary(cache.pos.view(1), dtype=activation_dtype(x))  # [1, D/2] each
        slot = (cache.pos % cache.context).view(1)  # int64 [1]
        mask = cache.valid()[:, None, None, :]  # bool [B, 1, 1, context], the same for every layer
        for layer, block in enumerate(self.blocks):
            x = block.step(x, cos, sin, cache, layer, slot, mask)
        cache.position += 1  # the eager copy (prefill checks it); a graph replay advances only `pos`
        cache.pos.add_(1)
        return self.heads(self.norm(x))

    def prefill(self, cache: KVCache, rows: torch.Tensor, latents, actions, game=None, *,
                lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Give `rows` (int64 [R]) a new history of T tokens: latents [R, T, groups], actions [R, T]
        (game [R]); returns the heads at their last token, [R, T, ...] sliced to [R, 1, ...].

        lengths int64 [R] (default: all T) gives row r a history of only its last lengths[r] tokens:
        the first T - lengths[r] are padding that no real token attends to, now or in later steps
        (its `start` is set after them), so the row is as if prefilled with its real tokens alone.
        A row with length 0 gets an empty history; its returned heads are padding's, not meaningful.

        The tokens take absolute positions position-T .. position-1, just before the next step's,
        so the other rows' histories are untouched. On a fresh cache (position 0) every row must be
        given its history at once; the shared position then starts at T. T may be 0 (an empty
        history: only `start` moves; the heads returned are None).

        Like `step`, the tokens' positions, slots and `start` are computed from the device scalar
        `cache.pos` (the same integers as from the Python `position`, so the same results): no
        Python int reaches the device, so a CUDA graph of a prefill (graphed.py's restarts) is right
        at every position. The Python int only serves the fresh-cache check above, which must hold
        when capturing too. Duplicate `rows` (padding) are fine if they carry the same history.
        """
        r, t = actions.shape
        if cache.position < t:
            if cache.position != 0 or r != cache.start.shape[0]:
                raise ValueError(f"cannot place {t} tokens before position {cache.position}: prefill every row first")
            cache.set_position(t)
        cache.start[rows] = cache.pos - (t if lengths is None else lengths)  # int64 [] or [R] into [R]
        if t == 0:
            return None
        if t > cache.context:
            raise ValueError(f"a history of {t} tokens exceeds the context of {cache.context}")
        mask = None  # plain causal
        if lengths is not None:
            # bool [R, 1, T, T]: causal, and keys before a row's first real token hidden from every query
            # but their own (a padding query needs one key, or its softmax is 0/0 = NaN)
            i = torch.arange(t, device=latents.device)
            real = i[None, :] >= (t - lengths)[:, None]  # [R, T]
            mask = ((i[None, :] <= i[:, None])[None] & (real[:, None, :] | torch.eye(t, dtype=torch.bool,
                                                                                     device=i.device)))[:, None]
        x = self.embed(latents, actions, None if game is None else game[:, None].expand(r, t))
        positions = cache.pos - t + torch.arange(t, device=x.device)  # int64 [T]: pos-T .. pos-1
        cos, sin = self.rotary(positions, dtype=activation_dtype(x))
        slots = (positions % cache.context)[None, :]  # [1, T]
        for layer, block in enumerate(self.blocks):
            q, k, v = block._qkv(x, cos, sin)  # [R, H, T, D]
            # advanced indices around a slice put the broadcast [R, T] dims first: values [R, T, H, D]
            cache.k[layer][rows[:, None], :, slots] = k.transpose(1, 2).to(cache.k.dtype)
            cache.v[layer][rows[:, None], :, slots] = v.transpose(1, 2).to(cache.v.dtype)
            x = block._finish(x, block.attend(q, k, v, mask))
        return self.heads(self.norm(x[:, -1:]))

"""DynamicsConfig and its parameter count, without torch: the study graph, `plan`'s compute
estimate and the ladders read them, and those must answer in a second for 23,514 jobs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scaleworld.atari.games import NUM_ACTIONS

TERMINATION_TARGETS = ("game_over", "life_loss")
"""What the termination head learns to predict: the game's end (the default), or the game's end or a
lost life (expert data hold few game-overs; a learning signal only, the data are unchanged).
Not a model setting: a run's choice, recorded with the trained model."""


@dataclass(frozen=True, kw_only=True)
class DynamicsConfig:
    width: int = 512
    depth: int = 2
    heads: int = 8
    ffn_mult: int = 4
    context: int = 64
    """Attention window in time steps (also the longest training sequence)."""
    groups: int = 32
    classes: int = 32
    num_actions: int = NUM_ACTIONS
    games: tuple[str, ...] = ()
    """Joint mode when non-empty: the games whose embedding the model learns, in index order."""
    reward_bins: int = 255
    reward_limit: float = 20.0
    """Two-hot bins span [-limit, limit] in symlog space."""

    def __post_init__(self) -> None:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.heads} heads of even size")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DynamicsConfig:
        return cls(**{**values, "games": tuple(values.get("games", ()))})


def parameter_counts(config: DynamicsConfig) -> dict[str, int]:
    """Total and transformer-block parameters of `DynamicsModel(config)`, by formula (a test checks
    it against the module's own count).

    `blocks` counts the attention + MLP + LayerNorm parameters of all blocks (about 12 x width^2 x
    depth, the figure scaling papers quote); `total` adds embeddings, the final norm and heads.
    """
    w, hidden = config.width, config.ffn_mult * config.width
    per_block = (2 * w  # norm1 (weight, bias)
                 + 3 * w * w + 3 * w  # qkv
                 + w * w + w  # proj
                 + 2 * w  # norm2
                 + w * hidden + hidden + hidden * w + w)  # MLP
    blocks = config.depth * per_block
    codes = config.groups * config.classes
    embeddings = (codes + config.num_actions + len(config.games)) * w
    heads = (w * codes + codes) + (w * config.reward_bins + config.reward_bins) + (w + 1)
    return {"total": blocks + embeddings + 2 * w + heads, "blocks": blocks}


def training_bytes(config: DynamicsConfig, *, batch: int) -> int:
    """Estimated peak device memory of one run's training step at `batch` windows of `context` tokens
    (bf16 autocast, as on a GPU), what the packer fits K runs into (scaleworld.study.packing):

    - 16 bytes a parameter: fp32 weights, gradient and AdamW's two moments;
    - activations kept for the backward, (18 + 4 x ffn_mult) x width bytes a token a layer: Korthikanti
      et al. 2022's 34 x width at ffn_mult 4 (their sbh(34 + 5as/h) without dropout masks' share
      counted twice and without the 5as/h of attention scores, which a flash kernel does not keep);
    - the heads: 16 bytes (fp32 logits, log-softmax, its gradient, targets) per logit a token, and the
      bf16 multi-hot of the latent embedding (2 bytes per code a token).

    An estimate to stay clear of out-of-memory, not a measurement (tools/gpu_round.py prints the peak
    measured beside it)."""
    tokens = batch * config.context
    codes = config.groups * config.classes
    per_token = (config.depth * (18 + 4 * config.ffn_mult) * config.width
                 + 16 * (codes + config.reward_bins + 1) + 2 * codes)
    return 16 * parameter_counts(config)["total"] + tokens * per_token

"""Hand-built world models with known optimal policies, for testing the actor-critic.

The transformer blocks are switched off (their output projections are zero, so the residual
stream passes the token embedding through), which makes every head a function of the current
token alone: hidden = LayerNorm(embed(z_t) + embed(a_t)). Embeddings are one-hot basis vectors,
so the heads can be written by hand:

- `action_reward_model`: reward ~1.2 when the action is RIGHT (3), 0 otherwise; latents random.
- `two_step_model`: FIRE (1) arms the next state (latent group 0 = class 1); RIGHT (3) taken in
  an armed state pays ~1.2; every other step pays 0. The optimal policy alternates FIRE, RIGHT;
  a myopic one never fires.
"""

from __future__ import annotations

import torch

from scaleworld.imagination.core import StartContexts
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.dynamics_config import DynamicsConfig

WIDTH = 32
FIRE, RIGHT = 1, 3
ARMED_DIM, UNARMED_DIM = 20, 21  # embedding directions of group 0's classes 1 and 0
ZERO_BIN, PAY_BIN = 127, 132  # bin 127 is symlog 0; bin 132 is symlog 0.787, i.e. a reward of 1.197
PAY = float(torch.expm1(torch.linspace(-20.0, 20.0, 255)[PAY_BIN]))


def _blank_model() -> DynamicsModel:
    model = DynamicsModel(DynamicsConfig(width=WIDTH, depth=1, heads=2, context=8, groups=4, classes=4))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.norm.weight.fill_(1.0)
        for block in model.blocks:
            block.norm1.weight.fill_(1.0)
            block.norm2.weight.fill_(1.0)
        for a in range(18):
            model.action_embed.weight[a, a] = 1.0
        model.termination_head.bias.fill_(-30.0)  # never terminates
        model.reward_head.bias[ZERO_BIN] = 10.0
    return model.eval()


def action_reward_model() -> DynamicsModel:
    model = _blank_model()
    with torch.no_grad():
        model.reward_head.weight[PAY_BIN, RIGHT] = 30.0  # hidden[RIGHT] ~ 5.6 when a=RIGHT, ~ -0.2 else
    return model


def two_step_model() -> DynamicsModel:
    model = _blank_model()
    c = model.config
    with torch.no_grad():
        model.latent_embed.weight[0 * c.classes + 1, ARMED_DIM] = 1.0
        model.latent_embed.weight[0 * c.classes + 0, UNARMED_DIM] = 1.0
        # reward needs armed AND RIGHT: hidden[ARMED] + hidden[RIGHT] is ~7.7 then, <= ~5.4 otherwise
        model.reward_head.weight[PAY_BIN, ARMED_DIM] = 30.0
        model.reward_head.weight[PAY_BIN, RIGHT] = 30.0
        model.reward_head.bias[PAY_BIN] = -30.0 * 6.5
        # next state: armed iff the action was FIRE (hidden[FIRE] ~ 3.9 vs ~ -0.2); other groups stay 0
        head = model.latent_head
        head.weight[0 * c.classes + 1, FIRE] = 10.0
        head.bias[0 * c.classes + 1] = -15.0
        head.bias[0 * c.classes + 0] = 5.0
        head.bias[2 : c.classes] = -30.0
        for g in range(1, c.groups):
            head.bias[g * c.classes] = 30.0
    return model


def start_contexts(*, steps: int = 2, rows: int = 64, seed: int = 0) -> StartContexts:
    """Unarmed frames (all zeros) with random actions; every game action legal."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.randint(0, 18, (rows,), generator=g)
    return StartContexts(tokens=torch.zeros(rows, 4, dtype=torch.uint8), actions=actions,
                         starts=torch.arange(rows - steps + 1), steps=steps, game=None,
                         action_mask=torch.ones(18, dtype=torch.bool))

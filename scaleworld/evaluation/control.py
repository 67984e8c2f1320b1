"""Control: a policy trained in imagination, scored in the real game, expert-random normalised.

`WorldModelAgent` plays the real game with what the policy saw in imagination: each protocol
frame is encoded by the frozen tokenizer (z_t), and the dynamics model's hidden state h_{t-1}
is built from the real history of (z, a) tokens through its KV cache, one row per emulator. An
emulator that starts a new episode (``is_init``) starts an empty history, so the policy's first
input in an episode has h = 0, like `Imagination` with one-step contexts. Episodes are played
by `score_policy`: full episodes under the protocol (no life-loss termination, the frame cap as
truncation), vectorised over emulators with fixed per-emulator quotas.

Normalised score = (score - random) / (upper - random). The anchors are measured by the pipeline
under the same protocol (`measure_anchors`): the random policy's mean score, and as upper anchor
the expert's measured score or, where no expert exists, the game's reference human score; every
record names which one it used.

The expert's quality record (`expert_quality`, in the anchors record whenever the expert was
scored): its raw score and SEM, the random policy's, the margin between them in standard errors,
the reference human and PPO scores (the game table), and the share of the PPO reference's margin
it reaches. When the expert is the upper anchor, a margin within noise (below `EXPERT_MARGIN_SE`
standard errors) stops the job: normalised scores would divide by noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from scaleworld.analysis.statistics import normalize_scores
from scaleworld.atari.games import get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.evaluation.scores import score_policy
from scaleworld.models.agent import ActorCritic
from scaleworld.models.categorical import sample_categorical
from scaleworld.models.dynamics import DynamicsModel, KVCache
from scaleworld.models.tokenizer import Tokenizer
from scaleworld.models.twohot import expected_value

CONTROL_FORMAT = "scaleworld.control/1"
ANCHORS_FORMAT = "scaleworld.anchors/2"
UPPER_ANCHORS = ("expert", "human")
EXPERT_MARGIN_SE = 2.0
"""The expert's margin over random must exceed this many standard errors of the difference of the two
means, sqrt(sem_expert^2 + sem_random^2), for it to be an upper anchor (one-sided z test at about 2.3%)."""


class WorldModelAgent(TensorDictModuleBase):
    """The policy in the real game, as a TensorDictModule: reads ``pixels``, ``action_mask``,
    ``is_init`` and ``agent_history``; writes ``action``, ``logits`` and ``("next", "agent_history")``.

    Its state is each row's history of (z, a) tokens in the dynamics model's KV cache. That cache is
    the exact state (with sliding-window attention over several layers, no window of tokens rebuilds
    it) and far too large to copy into every step's tensordict, so the agent keeps it, one row per
    env, and the tensordict names it as `ImaginationEnv` does: ``agent_history`` int64 [N] is the
    number the agent gave the row's history at its last step (0: an empty history; a tensordict
    without the key starts every row afresh, as a new run of envs). A row whose ``is_init`` is set
    starts an empty history whatever its number; any other
    row must carry its current number, or the agent refuses the tensordict (a step of an earlier
    rollout, or of another env) naming the rows, instead of acting on a history the tensordict does
    not describe. In a TorchRL env add its primer (``make_tensordict_primer()``, or the Collector's
    ``auto_register_policy_transforms=True``).
    """

    in_keys = ["pixels", "action_mask", "is_init", "agent_history"]
    out_keys = ["action", "logits", ("next", "agent_history"), "model_reward", "next_latent_nll"]
    """Besides acting, what the exploitation diagnostic reads (scaleworld.evaluation.exploitation):
    ``model_reward`` float [N], the model's expected reward for the action taken; ``next_latent_nll``
    float [N], this frame's latent NLL (nats, summed over groups, as the held-out NLL) under the
    model's prediction one step before (NaN on a row's first frame)."""

    def __init__(self, *, tokenizer: Tokenizer, model: DynamicsModel, agent: ActorCritic, game: str,
                 generator: torch.Generator | None = None, greedy: bool = False, behaviour: Any = None):
        super().__init__()
        games = list(model.config.games)
        if games and game not in games:
            raise ScaleworldError(f"the joint model knows {games}, not {game}")
        if generator is None and not greedy:
            raise ValueError("a sampling agent needs a generator (or greedy=True)")
        self.tokenizer, self.model, self.agent = tokenizer.eval(), model.eval(), agent.eval()
        self.game_index = games.index(game) if games else None
        self.generator = generator
        self.greedy = greedy
        self.behaviour = behaviour  # a policy that acts instead of the agent (the model still follows)
        self.cache: KVCache | None = None
        self.pending: torch.Tensor | None = None  # the model's next-latent logits per row, float [N, G, C]
        self.hidden: torch.Tensor | None = None  # h_{t-1} per row, float [N, width]
        self.history: torch.Tensor | None = None  # int64 [N]: each row's current history number
        self._issued = 0  # history numbers given so far (0 is every row's empty start)

    def make_tensordict_primer(self):
        """TorchRL's `TensorDictPrimer` of ``agent_history`` (0 at every reset)."""
        from torchrl.data import Unbounded
        from torchrl.envs import TensorDictPrimer

        return TensorDictPrimer({"agent_history": Unbounded(shape=(), dtype=torch.int64)}, default_value=0,
                                random=False)

    @torch.no_grad()
    def forward(self, td: TensorDictBase) -> TensorDictBase:
        batch = td.batch_size  # [] for a single env, [N] for a vector of them; flattened to [N]
        pixels = td["pixels"].reshape(-1, *td["pixels"].shape[len(batch):])
        n = pixels.shape[0]
        fresh = td["is_init"].reshape(n)
        given = td.get("agent_history", None)
        if self.cache is None or self.cache.start.shape[0] != n or given is None:  # no history given: a new run
            self.cache = self.model.new_cache(n)
            self.hidden = torch.zeros(n, self.model.config.width)
            self.history = torch.zeros(n, dtype=torch.int64)
            self.pending = None
        given = torch.zeros(n, dtype=torch.int64) if given is None else given.reshape(n)
        stale = ((given != self.history) & ~fresh).nonzero().flatten().tolist()
        if stale:
            raise ScaleworldError(
                f"rows {stale} carry agent histories the agent has moved past (a tensordict of an earlier step, or "
                "of another env): give each step the tensordict whose ('next', 'agent_history') the agent wrote last, "
                "or start those rows again with is_init")
        latent = self.tokenizer.encode(pixels).long()  # z_t [N, groups]
        nll = torch.full((n,), float("nan"))  # z_t under the prediction of step t-1; none on a first frame
        if self.pending is not None:
            logp = self.pending.log_softmax(-1).gather(-1, latent[..., None]).squeeze(-1)  # [N, G]
            nll = torch.where(fresh, nll, -logp.sum(-1))
        rows = fresh.nonzero().squeeze(-1)  # new episodes: empty histories
        if len(rows):
            self.model.prefill(self.cache, rows, latent[rows, :0], torch.zeros(len(rows), 0, dtype=torch.int64))
            self.hidden[rows] = 0.0
        logits = self.agent.logits(self.agent.features(latent, self.hidden), td["action_mask"].reshape(n, -1))
        action = logits.argmax(-1) if self.greedy else sample_categorical(logits, self.generator)
        if self.behaviour is not None:
            action = self.behaviour(td.select("pixels", "action_mask", "is_init").clone())["action"].reshape(n)
        # rows not acting (resets, no-op starts) also write a token: their next is_init discards it
        game = None if self.game_index is None else torch.full((n,), self.game_index)
        heads = self.model.step(self.cache, latent, action, game)
        self.hidden = heads["hidden"][:, 0].float()
        self.pending = heads["latent_logits"][:, 0].float()
        td["model_reward"] = expected_value(heads["reward_logits"][:, 0], self.model.config.reward_limit).float() \
            .reshape(batch)
        td["next_latent_nll"] = nll.reshape(batch)
        self.history = torch.arange(self._issued + 1, self._issued + 1 + n)
        self._issued += n
        td["action"] = action.reshape(batch)
        td["logits"] = logits.reshape(*batch, -1)
        td["next", "agent_history"] = self.history.reshape(batch)
        return td


def expert_quality(expert_record: dict[str, Any], random_record: dict[str, Any]) -> dict[str, Any]:
    """How strong an expert is, from its score record and the random policy's (same game and protocol).

    margin_se          (expert - random) / sqrt(sem_expert^2 + sem_random^2): the margin in standard
                       errors of the difference (inf when both SEMs are 0 and the margin positive)
    reference_share    (expert - random) / (PPO reference - random), random as measured here: the
                       share of the standard PPO run's margin reached (the reference was measured
                       under another protocol: a yardstick, not a normalisation)
    """
    g = get_game(expert_record["game"])
    expert, rand = expert_record["mean"], random_record["mean"]
    se = float(np.hypot(expert_record["sem"], random_record["sem"]))
    margin = expert - rand
    margin_se = margin / se if se > 0 else (float("inf") if margin > 0 else float("-inf") if margin < 0 else 0.0)
    return {"score": expert, "sem": expert_record["sem"], "episodes": expert_record["episodes"],
            "random": rand, "random_sem": random_record["sem"], "margin_se": float(margin_se),
            "human": g.human_score, "ppo_reference": g.ppo_score,
            "ppo_reference_source": "CleanRL ppo_atari_envpool_xla_jax, 10M agent steps (40M frames)",
            "reference_share": float(margin / (g.ppo_score - rand)) if g.ppo_score != rand else float("nan")}


def measure_anchors(*, game: str, protocol: Protocol, episodes: int, seed: int, num_envs: int, upper: str,
                    expert_record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The random policy's score (measured now) and the upper anchor: `expert_record` (a score
    record of the expert under the same protocol) or the reference human score. With an
    `expert_record` the record holds the expert's quality (`expert_quality`), and an expert upper
    anchor within noise of random is refused with one line."""
    from scaleworld.data.random_policy import RandomPolicy

    g = get_game(game)
    if upper not in UPPER_ANCHORS:
        raise ScaleworldError(f"upper anchor {upper!r}: use one of {', '.join(UPPER_ANCHORS)}")
    random_record = score_policy(game=g, policy=RandomPolicy(seed=seed), policy_identity={"kind": "random"},
                                 episodes=episodes, protocol=protocol, seed=seed, num_envs=num_envs)
    if expert_record is not None and expert_record["protocol"] != protocol.to_dict():
        raise ScaleworldError(f"{game}: the expert was scored under another protocol; score it again")
    quality = None if expert_record is None else expert_quality(expert_record, random_record)
    if upper == "expert":
        if expert_record is None:
            raise ScaleworldError(f"{game}: no expert score to normalise by; train or import an expert, "
                                  "or use the human reference score (control.upper_anchor=human)")
        if not quality["margin_se"] > EXPERT_MARGIN_SE:
            raise ScaleworldError(
                f"{game}: the expert's score {quality['score']:g} +- {quality['sem']:.3g} is within noise of the "
                f"random policy's {quality['random']:g} +- {quality['random_sem']:.3g} ({quality['margin_se']:.2f} "
                f"standard errors, at most {EXPERT_MARGIN_SE:g}), so normalised scores would divide by noise: train "
                "the expert longer (expert.agent_steps), score more episodes (expert.episodes, "
                "control.anchor_episodes), or normalise by the human score (control.upper_anchor=human)")
        upper_score, source = expert_record["mean"], expert_record.get("policy", {})
    else:
        upper_score, source = g.human_score, "reference human score (Atari 100k table)"
    if not upper_score > random_record["mean"]:
        raise ScaleworldError(f"{game}: the {upper} score {upper_score:g} does not beat the random policy's "
                              f"{random_record['mean']:g} under this protocol, so normalised scores are undefined: "
                              "train the expert longer or use control.upper_anchor=human")
    return {"format": ANCHORS_FORMAT, "game": game, "protocol": protocol.to_dict(),
            "random": {"score": random_record["mean"], "sem": random_record["sem"], "episodes": episodes,
                       "returns": random_record["returns"]},
            "upper": {"kind": upper, "score": float(upper_score), "source": source},
            **({"expert": quality} if quality is not None else {})}


def normalise(returns: list[float], anchors: dict[str, Any]) -> dict[str, Any]:
    """Per-episode and mean expert-random normalised scores, and the anchors they used."""
    random_score, upper_score = anchors["random"]["score"], anchors["upper"]["score"]
    values = normalize_scores(np.asarray(returns, float), random_score=random_score, expert_score=upper_score)
    return {"returns": [float(v) for v in values], "mean": float(values.mean()),
            "random_score": random_score, "upper_score": upper_score, "upper_kind": anchors["upper"]["kind"]}


def evaluate_control(*, policy_dir: str | Path, dynamics_dir: str | Path, tokenizer_dir: str | Path,
                     anchors: dict[str, Any], episodes: int, protocol: Protocol, seed: int = 0, num_envs: int = 8,
                     greedy: bool = False, out: str | Path | None = None) -> dict[str, Any]:
    """Score the policy of `policy_dir` in its real game; raw and normalised scores, written to `out`."""
    from scaleworld.models.model_files import load_dynamics, load_policy, load_tokenizer

    agent, identity = load_policy(policy_dir)
    model, dyn_identity = load_dynamics(dynamics_dir)
    tokenizer, tok_identity = load_tokenizer(tokenizer_dir)
    game = identity["game"]
    if identity["dynamics_sha256"] != dyn_identity["sha256"]:
        raise ScaleworldError(f"{policy_dir} was trained in another world model than {dynamics_dir}")
    if identity["tokenizer_sha256"] != tok_identity["sha256"]:
        raise ScaleworldError(f"{policy_dir} was trained on tokens of another tokenizer than {tokenizer_dir}: "
                              "pass the tokenizer that encoded the world model's data")
    if anchors["game"] != game or anchors["protocol"] != protocol.to_dict():
        raise ScaleworldError(f"the anchors are for {anchors['game']} under another protocol; measure them again")
    from scaleworld.data.random_policy import RandomPolicy
    from scaleworld.evaluation.exploitation import Tally, random_episodes

    player = WorldModelAgent(tokenizer=tokenizer, model=model, agent=agent, game=game, greedy=greedy,
                             generator=torch.Generator().manual_seed(seed))
    own, rand = Tally(), Tally()  # the exploitation diagnostic on the policy's episodes and the random policy's
    record = score_policy(game=game, policy=player, episodes=episodes, protocol=protocol, seed=seed,
                          num_envs=num_envs, observe=own.observe, policy_identity={
                              "kind": "imagination", "policy_sha256": identity["sha256"],
                              "dynamics_sha256": dyn_identity["sha256"], "tokenizer_sha256": tok_identity["sha256"],
                              "greedy": greedy})
    follower = WorldModelAgent(tokenizer=tokenizer, model=model, agent=agent, game=game, greedy=True,
                               behaviour=RandomPolicy(seed=seed))
    score_policy(game=game, policy=follower, episodes=random_episodes(episodes), protocol=protocol, seed=seed,
                 num_envs=num_envs, observe=rand.observe, policy_identity={"kind": "random"})
    record = {**record, "format": CONTROL_FORMAT, "normalised": normalise(record["returns"], anchors),
              "anchors": anchors, "diagnostic": {"policy": own.summary(), "random": rand.summary()}}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(out), record)
    return record

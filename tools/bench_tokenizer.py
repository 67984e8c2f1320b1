"""Benchmark the tokenizer objective: version 2 (scaleworld's) against version 1 (the objective it
replaced, kept below as the baseline), trained here at the same budget on the same frames.

Data: random-policy datasets under the default Atari 100k protocol (`--steps-data` agent steps per
game; an existing dataset in `--data DIR/<Game>` is reused). Each game's episodes are split as the
study splits them (val_fraction 0.1, split seed 0); both objectives train on the training episodes
through the project's Trainer (AdamW, warmup + cosine, clipping at 1) and are measured on the
held-out episodes by `scaleworld.models.tokenizer_quality.measure_quality` (residual fraction,
PSNR, per-variable code perplexity within the game, distinct codes). Also printed: the code
perplexity of the training forward pass at initialisation (how many classes frames get before any
learning; 1 = every frame the same code), and the CPU (process) and wall seconds per 1,000 steps.
Figures are ratios v2 / v1 measured in this run.

`--shared` also trains one version 2 tokenizer on all the games together (`--steps` x number of
games steps: the same frames per game as each per-game run) and prints its per-game figures.
Several `--steps` values train one run per budget (a budget curve).

Usage: .venv/bin/python tools/bench_tokenizer.py [--games Pong Breakout Freeway Boxing]
       [--steps 1000] [--batch-size 32] [--channels 16 32 64 64] [--data DIR] [--objectives [1] [2]]
       [--shared] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from torch import nn  # noqa: E402
from torchrl.objectives import LossModule  # noqa: E402

from scaleworld.atari.protocol import Protocol  # noqa: E402
from scaleworld.data.collect import collect_dataset  # noqa: E402
from scaleworld.data.dataset import OfflineDataset  # noqa: E402
from scaleworld.data.random_policy import RandomPolicy  # noqa: E402
from scaleworld.data.sampling import MultiGameWindows, split_episodes  # noqa: E402
from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig  # noqa: E402
from scaleworld.models.tokenizer_quality import game_quality, perplexity  # noqa: E402
from scaleworld.training.config import TrainConfig  # noqa: E402
from scaleworld.training.runs import tokenizer_objective  # noqa: E402
from scaleworld.training.trainer import Trainer  # noqa: E402


class VersionOneTokenizer(nn.Module):
    """The version 1 tokenizer, as it was: per-frame GroupNorm(1, C), the argmax one-hot in training
    (straight-through), reconstructions clamped to [0, 1] inside the loss."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = c = config
        down, cin = [], 3
        for cout in c.channels:
            down += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(1, cout), nn.SiLU()]
            cin = cout
        self.encoder = nn.Sequential(*down)
        self.bottom = c.frame_size // 2 ** len(c.channels)
        flat = c.channels[-1] * self.bottom**2
        self.to_logits = nn.Linear(flat, c.groups * c.classes)
        self.from_latent = nn.Linear(c.groups * c.classes, flat)
        up, widths = [], list(reversed(c.channels))
        for cin, cout in zip(widths, widths[1:] + [widths[-1]]):
            up += [nn.GroupNorm(1, cin), nn.SiLU(), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up, nn.Conv2d(widths[-1], 3, 3, padding=1))

    logits = Tokenizer.logits
    probs = Tokenizer.probs
    sample_onehot = Tokenizer.sample_onehot

    def argmax_onehot(self, logits):
        probs = self.probs(logits)
        return F.one_hot(probs.argmax(-1), self.config.classes).to(probs.dtype) + probs - probs.detach()

    def decode_onehot(self, onehot):
        h = self.from_latent(onehot.flatten(1)).view(-1, self.config.channels[-1], self.bottom, self.bottom)
        return (self.decoder(h) + 0.5).clamp(0, 1).permute(0, 2, 3, 1)

    @torch.no_grad()
    def decode(self, tokens):
        onehot = F.one_hot(tokens.long(), self.config.classes).float()
        return (self.decode_onehot(onehot) * 255).round().to(torch.uint8)


class VersionOneLoss(LossModule):
    """Version 1's objective: per-pixel mean MSE through the argmax code + 0.1 x a code-usage term
    (mean per-frame entropy - entropy of the batch-average distribution, over ln(classes))."""

    def __init__(self, tokenizer: VersionOneTokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, td):
        pixels = td["pixels"].reshape(-1, *td["pixels"].shape[-3:])
        logits = self.tokenizer.logits(pixels)
        loss = F.mse_loss(self.tokenizer.decode_onehot(self.tokenizer.argmax_onehot(logits)), pixels.float() / 255)
        probs = self.tokenizer.probs(logits)
        average = probs.mean(0)
        usage = 0.1 * (-(probs * probs.log()).sum(-1).mean() + (average * average.log()).sum(-1).mean())
        return TensorDict({"loss_reconstruction": loss, "loss_code_usage": usage / math.log(probs.shape[-1])}, [])


@dataclass
class Run:
    objective: int
    games: list[str]
    steps: int


def dataset(folder: Path, game: str, steps: int) -> OfflineDataset:
    path = folder / game
    if not (path / "manifest.json").is_file():
        policy = RandomPolicy(seed=0)
        collect_dataset(game=game, policy=policy, policy_identity=policy.identity, steps=steps, out=path,
                        protocol=Protocol(), seed=0, num_envs=8, progress=False)
    return OfflineDataset.open(path)


def init_perplexity(tokenizer: nn.Module, pixels: torch.Tensor, objective: int) -> float:
    """Median over variables of the perplexity of the classes frames get in the training forward
    pass at initialisation (argmax for version 1, a sample for version 2), on a copy and with the
    RNG state restored afterwards, so the run itself starts as train_tokenizer's would."""
    probe = copy.deepcopy(tokenizer).train()
    with torch.no_grad(), torch.random.fork_rng():
        logits = probe.logits(pixels)
        onehot = probe.argmax_onehot(logits) if objective == 1 else probe.sample_onehot(logits)
    return float(perplexity(onehot.mean(0)).median())  # of the class frequencies [G, C] over the frames


def train_and_measure(run: Run, datasets: dict[str, OfflineDataset], *, batch_size: int, channels: list[int],
                      seed: int, lr: float) -> dict:
    config = TokenizerConfig(channels=tuple(channels))
    chosen = [datasets[g] for g in run.games]
    splits = [split_episodes(len(ds.episode_lengths), val_fraction=0.1, seed=0) for ds in chosen]
    torch.manual_seed(seed)
    model = Tokenizer(config) if run.objective == 2 else VersionOneTokenizer(config)
    generators = {"train": torch.Generator().manual_seed(seed)}
    if run.objective == 2:  # exactly train_tokenizer's objective
        loss, generators["codes"] = tokenizer_objective(model, chosen, [s[0] for s in splits], seed=seed, device="cpu")
    else:
        loss = VersionOneLoss(model)
    probe = torch.as_tensor(chosen[0].data["pixels"][torch.linspace(0, len(chosen[0]) - 1, 256).long()])
    start_ppl = init_perplexity(model, probe, run.objective)
    gen = generators["train"]
    view = MultiGameWindows(chosen, seq_len=1, generator=gen, episodes=[s[0] for s in splits])
    train = TrainConfig(steps=run.steps, batch_size=batch_size, lr=lr, warmup_steps=min(50, run.steps),
                        eval_every=run.steps, checkpoint_every=run.steps, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(loss=loss, sample_train=view.sample, sample_val=None, config=train, run_dir=tmp,
                          generators=generators, progress=False)
        cpu, wall = time.process_time(), time.perf_counter()
        trainer.fit()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    model.eval()
    quality = {ds.game: game_quality(model, ds, held_out, frames_from="held_out", seed=seed)
               for ds, (_, held_out) in zip(chosen, splits)}
    return {"objective": run.objective, "games": run.games, "steps": run.steps, "init_perplexity": start_ppl,
            "cpu_s_per_1k": cpu / run.steps * 1000, "wall_s_per_1k": wall / run.steps * 1000, "quality": quality}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--games", nargs="+", default=["Pong", "Breakout", "Freeway", "Boxing"])
    p.add_argument("--steps", type=int, nargs="+", default=[1000], help="training steps (several: one run each)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channels", type=int, nargs="+", default=list(TokenizerConfig.channels))
    p.add_argument("--objectives", type=int, nargs="*", default=[1, 2], choices=[1, 2],
                   help="per-game runs of these objectives (none: only --shared)")
    p.add_argument("--shared", action="store_true", help="also one version 2 tokenizer on all the games")
    p.add_argument("--steps-data", type=int, default=10_000, help="random-policy agent steps per game")
    p.add_argument("--data", type=Path, help="folder of datasets DIR/<Game> (collected there if missing)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        datasets = {g: dataset(folder, g, args.steps_data) for g in args.games}
        runs = [Run(o, [g], s) for g in args.games for s in args.steps for o in args.objectives]
        if args.shared:
            runs += [Run(2, list(args.games), s * len(args.games)) for s in args.steps]
        results = []
        print(f"data: random policy, {args.steps_data} steps per game, default protocol; held-out episodes "
              f"(val 0.1, split seed 0); batch {args.batch_size}, channels {args.channels}, lr {args.lr}")
        print(f"{'game':10s} {'tokenizer':12s} {'steps':>6s} {'residual':>8s} {'sampled':>8s} {'PSNR':>6s} "
              f"{'meanPSNR':>8s} {'ppl':>5s} {'distinct':>8s} {'init ppl':>8s} {'cpu s/1k':>8s} {'wall s/1k':>9s}")
        for run in runs:
            r = train_and_measure(run, datasets, batch_size=args.batch_size, channels=args.channels, seed=args.seed,
                                  lr=args.lr)
            results.append(r)
            name = f"v{run.objective} " + ("per-game" if len(run.games) == 1 else "shared")
            for game, q in r["quality"].items():
                print(f"{game:10s} {name:12s} {run.steps:6d} {q['residual_fraction']:8.3f} "
                      f"{q['sampled_residual_fraction']:8.3f} {q['psnr_db']:6.1f} {q['mean_frame_psnr_db']:8.1f} "
                      f"{q['perplexity_median']:5.1f} {q['distinct_codes']:4d}/{q['frames']:<4d}"
                      f"{r['init_perplexity']:8.1f} {r['cpu_s_per_1k']:8.1f} {r['wall_s_per_1k']:9.1f}", flush=True)
    by = {(r["objective"], r["games"][0], r["steps"]): r for r in results if len(r["games"]) == 1}
    if {1, 2} <= set(args.objectives):
        print("ratios v2 / v1 at the same budget (residual: lower is better; time: cost of the new objective)")
        for game in args.games:
            for s in args.steps:
                old, new = by[(1, game, s)], by[(2, game, s)]
                residual = new["quality"][game]["residual_fraction"] / old["quality"][game]["residual_fraction"]
                print(f"{game:10s} steps {s:6d}: residual x{residual:.2f}, "
                      f"CPU time x{new['cpu_s_per_1k'] / old['cpu_s_per_1k']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"data": str(args.data)}, "runs": results},
                                        indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

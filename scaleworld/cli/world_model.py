"""`scaleworld train | eval`: train the tokenizer and the dynamics model outside a study, and
evaluate policies (real-game scores) and world models (fidelity).

Handlers import the heavy libraries themselves, so `scaleworld --help` is fast; a `ScaleworldError`
is one line and exit 2 (cli/main.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scaleworld.cli.args import add_no_progress, count, declare_outputs, parse_protocol, quiet_torchrl, real


def cmd_eval_score(args: argparse.Namespace) -> None:
    from scaleworld.atari.games import get_game
    from scaleworld.evaluation.scores import score_policy, write_score
    from scaleworld.experts.policies import make_policy

    game = get_game(args.game)
    protocol = parse_protocol(args.protocol)
    policy = make_policy(args.policy, seed=args.seed, protocol=protocol)
    record = score_policy(
        game=game, policy=policy, policy_identity=policy.identity, episodes=args.episodes,
        protocol=protocol, seed=args.seed, num_envs=args.envs,
    )
    if args.out:
        write_score(record, args.out)
    print(f"{game.name} {args.policy}: mean {record['mean']:.2f} +- {record['sem']:.2f} (sem) "
          f"over {args.episodes} episodes" + (f"; wrote {args.out}" if args.out else ""))


def _train_config(args: argparse.Namespace):
    from scaleworld.training.config import TrainConfig, tokens_to_steps

    steps = args.steps
    if args.tokens is not None:
        steps = tokens_to_steps(args.tokens, batch_size=args.batch_size, seq_len=getattr(args, "context", 1))
    if getattr(args, "match", None):
        from scaleworld.training.config import matched_steps

        steps = matched_steps(joint_steps=steps, num_games=args.joint_games, rule=args.match)
    return TrainConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                       eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, compile=args.compile,
                       logger=args.logger, seed=args.seed)


def _device(args: argparse.Namespace) -> str:
    from scaleworld.training.trainer import resolve_device

    return resolve_device(args.device)


def cmd_train_tokenizer(args: argparse.Namespace) -> None:
    quiet_torchrl()
    from scaleworld.models.tokenizer_config import TokenizerConfig, default_steps
    from scaleworld.training.runs import train_tokenizer

    if args.steps is None and args.tokens is None:
        args.steps = default_steps(games=len(args.data), batch_size=args.batch_size)

    info = train_tokenizer(data_dirs=args.data, out=args.out, config=TokenizerConfig(channels=tuple(args.channels)),
                           train=_train_config(args), val_fraction=args.val_fraction, split_seed=args.split_seed,
                           progress=not args.no_progress, device=_device(args))
    print(f"wrote {args.out}/tokenizer.pt ({info['scope']}, games {', '.join(info['games'])}); "
          f"final {_fmt(info['final'])}")
    for game, q in info["quality"].items():
        print(f"{game}: residual fraction {q['residual_fraction']:.3f} (sampled {q['sampled_residual_fraction']:.3f}), "
              f"PSNR {q['psnr_db']:.1f} dB (mean frame {q['mean_frame_psnr_db']:.1f}), code perplexity "
              f"{q['perplexity_median']:.1f} (median of variables), {q['distinct_codes']} distinct codes in "
              f"{q['frames']} {q['frames_from'].replace('_', '-')} frames")


def cmd_train_dynamics(args: argparse.Namespace) -> None:
    quiet_torchrl()
    from scaleworld.models.ladders import get_size
    from scaleworld.training.runs import train_dynamics

    config = get_size(args.size).config(context=args.context)
    info = train_dynamics(token_dirs=args.tokens_data, out=args.out, model=config, train=_train_config(args),
                          windows=args.windows, termination=args.termination,
                          validation_fraction=args.validation_fraction,
                          val_fraction=args.val_fraction, split_seed=args.split_seed,
                          progress=not args.no_progress, device=_device(args))
    print(f"wrote {args.out}/dynamics.pt ({info['mode']}, {info['params']['total']:,} params, "
          f"{info['train']['steps']} steps); final {_fmt(info['final'])}")
    if "best" in info:
        print(f"wrote {args.out}/dynamics_best.pt: step {info['best']['step']}, validation NLL "
              f"{info['best']['validation_nll']:.4f} nats/frame")


def cmd_eval_fidelity(args: argparse.Namespace) -> None:
    quiet_torchrl()
    from scaleworld.evaluation.fidelity import evaluate_fidelity

    record = evaluate_fidelity(dynamics_dir=args.dynamics, tokenizer_dir=args.tokenizer, token_dirs=args.tokens_data,
                               context_steps=args.context_steps, horizon=args.horizon, rollouts=args.rollouts,
                               seed=args.seed, out=args.out)
    for game, r in record["games"].items():
        f1 = "n/a" if r["termination_f1"] is None else f"{r['termination_f1']:.3f}"
        psnr, floor = r["open_loop"]["psnr"], r["open_loop"]["tokenizer_psnr"]
        base = r["baseline_nll"]
        verdict = "beats both" if r["beats_baselines"] else "does NOT beat both"
        print(f"{game}: NLL {r['nll_nats_per_frame']:.4f} nats/frame (baselines: unigram {base['unigram']:.4f}, "
              f"copy last frame {base['copy']:.4f}: {verdict}), reward MAE {r['reward_mae']:.4f}, "
              f"termination F1 {f1}, open-loop PSNR h1..h{len(psnr)} "
              + (f"{' '.join(f'{p:.1f}' for p in psnr)} dB (tokenizer alone on the same frames: "
                 f"{' '.join(f'{p:.1f}' for p in floor)})" if psnr else "n/a (episodes too short)"))
    if "best" in record:
        b = record["best"]
        print(f"best checkpoint (step {b['step']}, validation NLL {b['validation_nll']:.4f}): NLL "
              + ", ".join(f"{game} {r['nll_nats_per_frame']:.4f}" for game, r in b["games"].items()) + " nats/frame")
    if args.out:
        print(f"wrote {args.out}")


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k.startswith(("loss_", "val_")))


def _add_train_args(p: argparse.ArgumentParser, *, steps: int | None, lr: float, steps_help: str = "") -> None:
    from scaleworld.study.spec import DataSpec  # light: the defaults are TrainConfig's and the data section's
    from scaleworld.training.config import TrainConfig

    d = TrainConfig()
    p.add_argument("--out", required=True, type=Path, help="run folder (resumes from its checkpoint if present)")
    declare_outputs(p, out="run_folder")
    budget = p.add_mutually_exclusive_group()  # one budget: both given is refused, not one silently taken
    budget.add_argument("--steps", type=count(1), default=steps, help=f"gradient steps (default {steps_help or steps})")
    budget.add_argument("--tokens", type=count(1), help="budget in tokens instead of --steps (batch x window per step)")
    p.add_argument("--batch-size", type=count(1), default=d.batch_size,
                   help=f"sequences (dynamics) or frames (tokenizer) per step (default {d.batch_size})")
    p.add_argument("--lr", type=real(0, low_open=True), default=lr, help=f"peak learning rate (default {lr:g})")
    p.add_argument("--warmup", type=count(0), default=d.warmup_steps,
                   help=f"linear warmup steps (default {d.warmup_steps})")
    p.add_argument("--eval-every", type=count(1), default=d.eval_every,
                   help=f"held-out evaluation every N steps (default {d.eval_every})")
    p.add_argument("--checkpoint-every", type=count(1), default=d.checkpoint_every,
                   help=f"atomic checkpoint every N steps (default {d.checkpoint_every})")
    data = DataSpec()
    p.add_argument("--val-fraction", type=real(0, 1), default=data.val_fraction,
                   help=f"share of episodes held out (default {data.val_fraction})")
    p.add_argument("--seed", type=count(0), default=d.seed, help="seeds initialisation and sampling")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if visible")
    p.add_argument("--logger", default=d.logger, choices=["csv", "tensorboard", "wandb"],
                   help=f"TorchRL logger (default {d.logger}, in OUT/logs)")
    add_no_progress(p)


def add_eval_parser(groups: argparse._SubParsersAction, *, protocol_help: str) -> None:
    from scaleworld.study.spec import ExpertSpec  # light: a policy is scored as the spec scores an expert

    score = ExpertSpec()
    ev = groups.add_parser("eval", help="evaluation: policy scores in the real game, world-model fidelity")
    ev_cmds = ev.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = ev_cmds.add_parser("score", help="score a policy over full episodes (e.g. the random anchor)")
    p.add_argument("--game", required=True, help="an Atari 100k game, e.g. Pong")
    p.add_argument("--policy", default="random", help="the policy to score (default: random)")
    p.add_argument("--episodes", type=count(1), default=score.episodes,
                   help=f"full episodes to play (default {score.episodes})")
    p.add_argument("--out", type=Path, help="write the score record (JSON) here")
    declare_outputs(p, out="file")
    p.add_argument("--seed", type=count(0), default=score.seed, help="seeds the emulators, no-op starts and policy")
    p.add_argument("--envs", type=count(1), default=score.num_envs,
                   help=f"emulators stepped in parallel (default {score.num_envs})")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE", help=protocol_help)
    p.set_defaults(func=cmd_eval_score)

    p = ev_cmds.add_parser("fidelity", help="world-model fidelity on held-out episodes (NLL, reward, rollouts)")
    p.add_argument("--dynamics", required=True, type=Path, help="dynamics run folder")
    p.add_argument("--tokenizer", required=True, type=Path, help="tokenizer run folder")
    p.add_argument("--tokens", dest="tokens_data", required=True, nargs="+", type=Path,
                   help="token dataset(s) of the model's games")
    from scaleworld.study.spec import FidelitySpec  # light: the defaults are the spec's fidelity section's

    f = FidelitySpec()
    p.add_argument("--context-steps", type=count(1), default=f.context_steps,
                   help=f"real steps before imagining (default {f.context_steps})")
    p.add_argument("--horizon", type=count(1), default=f.horizon,
                   help=f"imagined steps scored per rollout (default {f.horizon})")
    p.add_argument("--rollouts", type=count(1), default=f.rollouts,
                   help=f"open-loop rollouts per game (default {f.rollouts})")
    p.add_argument("--seed", type=count(0), default=f.seed,
                   help=f"seeds the choice of rollout starts (default {f.seed})")
    p.add_argument("--out", type=Path, help="write the fidelity record (JSON) here")
    declare_outputs(p, out="file")
    p.set_defaults(func=cmd_eval_fidelity)


def add_train_parser(groups: argparse._SubParsersAction) -> None:
    from scaleworld.atari.games import GAMES  # light: the game table, no emulator
    from scaleworld.study.spec import DataSpec
    train = groups.add_parser("train", help="train the world model: tokenizer, dynamics")
    train_cmds = train.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = train_cmds.add_parser("tokenizer", help="train the categorical tokenizer on pixel datasets")
    p.add_argument("--data", required=True, nargs="+", type=Path,
                   help="pixel dataset(s): one game = per_game scope, several = shared")
    from scaleworld.models.tokenizer_config import FRAMES_PER_GAME, TokenizerConfig
    from scaleworld.study.spec import TokenizerSpec, TrainSpec
    from scaleworld.training.config import TrainConfig

    widths = list(TokenizerConfig.channels)
    p.add_argument("--channels", type=count(1), nargs="+", default=widths,
                   help=f"conv widths, each stage halving the frame (default {' '.join(map(str, widths))})")
    p.add_argument("--split-seed", type=count(0), default=DataSpec().split_seed,
                   help="seeds the train/held-out episode split (use the dynamics runs' split)")
    _add_train_args(p, steps=None, lr=TokenizerSpec().lr, steps_help=f"{FRAMES_PER_GAME:,} frames of every game")
    p.set_defaults(func=cmd_train_tokenizer)
    p = train_cmds.add_parser("dynamics", help="train a dynamics transformer on token datasets")
    p.add_argument("--tokens-data", "--data", dest="tokens_data", required=True, nargs="+", type=Path,
                   help="token dataset(s): one game = single mode, several = joint (balanced games)")
    p.add_argument("--size", default="tiny-d1", help="a ladder size, e.g. paper-d12 (see `scaleworld model ladder`)")
    from scaleworld.models.dynamics_config import DynamicsConfig  # light: no torch

    p.add_argument("--context", type=count(1), default=DynamicsConfig.context,
                   help=f"attention window = training sequence length (default {DynamicsConfig.context})")
    p.add_argument("--split-seed", type=count(0), default=DataSpec().split_seed,
                   help="seeds the train/held-out episode split")
    from scaleworld.training.config import MATCH_RULES

    p.add_argument("--match", choices=list(MATCH_RULES),
                   help="matched-budget single run: derive steps from a joint run's --steps and --joint-games "
                        "(data: as tokens_per_game, on a dataset of --joint-games x the usual steps you collected)")
    p.add_argument("--joint-games", type=count(1), default=len(GAMES), help="games of the joint run being matched")
    from scaleworld.data.windows import WINDOWS
    from scaleworld.models.dynamics_config import TERMINATION_TARGETS

    p.add_argument("--termination", choices=TERMINATION_TARGETS, default=TERMINATION_TARGETS[0],
                   help=f"what the termination head learns: game_over, or life_loss (a game over or a lost life) "
                        f"(default {TERMINATION_TARGETS[0]})")
    p.add_argument("--validation-fraction", type=real(0, 1), default=TrainSpec().validation_fraction,
                   help="share of the training episodes held out to pick the best checkpoint, saved beside the "
                        "final one as dynamics_best.pt (default 0: none)")
    p.add_argument("--windows", choices=WINDOWS, default=WINDOWS[0],
                   help=f"training windows: inside episodes, or edge_fair (clipped at episode ends: first and "
                        f"terminal steps as often as any) (default {WINDOWS[0]})")
    _add_train_args(p, steps=TrainSpec().steps, lr=TrainConfig().lr)
    p.set_defaults(func=cmd_train_dynamics)

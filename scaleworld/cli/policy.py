"""`scaleworld policy train | eval`: a policy trained inside a world model, scored in the real game.

`add_policy_parser(groups)` adds the ``policy`` group to the CLI's subparsers; handlers import the
heavy libraries themselves and follow the CLI's conventions (a `ScaleworldError` is one line, exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scaleworld.cli.args import add_no_progress, count, declare_outputs, parse_protocol, quiet_torchrl, real


def cmd_policy_train(args: argparse.Namespace) -> None:
    quiet_torchrl()
    from scaleworld.imagination.config import policy_train_config
    from scaleworld.imagination.train import train_policy
    from scaleworld.models.policy_config import PolicyConfig
    from scaleworld.training.trainer import resolve_device

    config = PolicyConfig(horizon=args.horizon, context_steps=args.context_steps, gamma=args.gamma,
                          lmbda=args.lmbda, entropy_coef=args.entropy, units=args.units, layers=args.layers)
    train = policy_train_config(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                checkpoint_every=args.checkpoint_every, logger=args.logger)
    info = train_policy(dynamics_dir=args.dynamics, token_dir=args.tokens, out=args.out, config=config, train=train,
                        starts=args.starts, device=resolve_device(args.device), progress=not args.no_progress)
    final = info["final"]
    print(f"wrote {args.out}/policy.pt ({info['game']}, {args.steps} updates of {args.batch_size} x {args.horizon} "
          f"imagined steps); imagined return {final.get('metric_return', float('nan')):.3f}, "
          f"reward/step {final.get('metric_reward', float('nan')):.4f}")


def cmd_policy_eval(args: argparse.Namespace) -> None:
    quiet_torchrl()
    import json

    from scaleworld.evaluation.control import evaluate_control, measure_anchors
    from scaleworld.models.model_files import load_policy

    protocol = parse_protocol(args.protocol)
    _, identity = load_policy(args.policy)
    expert_record = None
    if args.upper == "expert":
        from scaleworld.experts.anchor import score_expert

        if args.expert is None:
            from scaleworld.errors import ScaleworldError

            raise ScaleworldError("--upper expert needs --expert DIR (an expert checkpoint), or use --upper human")
        # The expert's score under this evaluation's protocol and episodes goes beside --out, never into
        # the expert's own folder (its score.json is the anchor it was measured for)
        expert_record = score_expert(args.expert, episodes=args.anchor_episodes, protocol=protocol, seed=args.seed,
                                     num_envs=args.envs, out=args.out.with_suffix(".expert.json") if args.out else None,
                                     write=args.out is not None)
    anchors = measure_anchors(game=identity["game"], protocol=protocol, episodes=args.anchor_episodes, seed=args.seed,
                              num_envs=args.envs, upper=args.upper, expert_record=expert_record)
    record = evaluate_control(policy_dir=args.policy, dynamics_dir=args.dynamics, tokenizer_dir=args.tokenizer,
                              anchors=anchors, episodes=args.episodes, protocol=protocol, seed=args.seed,
                              num_envs=args.envs, greedy=args.greedy, out=args.out)
    n = record["normalised"]
    print(f"{record['game']}: mean score {record['mean']:.2f} over {args.episodes} episodes "
          f"(returns {json.dumps(record['returns'])}); normalised {n['mean']:.3f} "
          f"(random {n['random_score']:.2f}, {n['upper_kind']} {n['upper_score']:.2f})")
    if args.out:
        print(f"wrote {args.out}")


def add_policy_parser(groups: argparse._SubParsersAction, *, protocol_help: str) -> None:
    from scaleworld.imagination.config import DEFAULT_STARTS, POLICY_TRAINING, START_SPLITS  # light: no torch
    from scaleworld.models.policy_config import PolicyConfig  # light: no torch

    policy = groups.add_parser("policy", help="policies in imagination: train inside a world model, eval in the game")
    cmds = policy.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = cmds.add_parser("train", help="train an actor-critic purely inside a trained dynamics model")
    p.add_argument("--dynamics", required=True, type=Path, help="dynamics run folder (the world model)")
    p.add_argument("--tokens", required=True, type=Path,
                   help="the game's token dataset; rollouts start from its episodes (--starts)")
    p.add_argument("--out", required=True, type=Path, help="run folder (resumes from its checkpoint if present)")
    declare_outputs(p, out="run_folder")
    t, c = POLICY_TRAINING, PolicyConfig()  # every default stated once: imagination/config.py, models/policy_config.py
    p.add_argument("--steps", type=count(1), default=t.steps, help=f"actor-critic updates (default {t.steps})")
    p.add_argument("--batch-size", type=count(1), default=t.batch_size,
                   help=f"imagined rollouts per update (default {t.batch_size})")
    p.add_argument("--horizon", type=count(1), default=c.horizon,
                   help=f"imagined steps per rollout (default {c.horizon})")
    p.add_argument("--context-steps", type=count(1), default=c.context_steps,
                   help=f"real steps each rollout starts from, fewer at an episode's start (default {c.context_steps})")
    p.add_argument("--lr", type=real(0, low_open=True), default=t.lr,
                   help=f"learning rate of actor and critic (default {t.lr:g})")
    p.add_argument("--starts", default=DEFAULT_STARTS, choices=START_SPLITS,
                   help="episodes of the model's split imagined rollouts start from: held-out (the fidelity "
                        f"episodes), train or all (default {DEFAULT_STARTS})")
    p.add_argument("--gamma", type=real(0, 1, low_open=True, high_open=False), default=c.gamma,
                   help=f"discount (default {c.gamma})")
    p.add_argument("--lmbda", type=real(0, 1, high_open=False), default=c.lmbda,
                   help=f"lambda of the lambda-returns (default {c.lmbda})")
    p.add_argument("--entropy", type=real(0), default=c.entropy_coef,
                   help=f"entropy bonus coefficient (default {c.entropy_coef:g})")
    p.add_argument("--units", type=count(1), default=c.units,
                   help=f"hidden units of actor and critic (default {c.units})")
    p.add_argument("--layers", type=count(0), default=c.layers,
                   help=f"hidden layers of actor and critic (default {c.layers})")
    p.add_argument("--checkpoint-every", type=count(1), default=t.checkpoint_every,
                   help=f"atomic checkpoint every N updates (default {t.checkpoint_every})")
    p.add_argument("--seed", type=count(0), default=0, help="seeds initialisation, rollout starts and sampling")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if visible")
    p.add_argument("--logger", default="csv", choices=["csv", "tensorboard", "wandb"],
                   help="TorchRL logger (default csv, in OUT/logs)")
    add_no_progress(p)
    p.set_defaults(func=cmd_policy_train)

    p = cmds.add_parser("eval", help="score a policy in its real game, raw and expert-random normalised")
    p.add_argument("--policy", required=True, type=Path, help="policy run folder (policy.pt)")
    p.add_argument("--dynamics", required=True, type=Path, help="the dynamics run it was trained in")
    p.add_argument("--tokenizer", required=True, type=Path, help="the tokenizer run of the model's tokens")
    p.add_argument("--episodes", type=count(1), default=8, help="full episodes to play (default 8)")
    p.add_argument("--upper", default="human", choices=["human", "expert"],
                   help="upper anchor: the reference human score (default) or --expert's measured score")
    p.add_argument("--expert", type=Path, help="expert checkpoint folder (with --upper expert)")
    p.add_argument("--anchor-episodes", type=count(1), default=16,
                   help="episodes measuring the random (and expert) anchor")
    p.add_argument("--greedy", action="store_true", help="act greedily instead of sampling")
    p.add_argument("--seed", type=count(0), default=0, help="seeds the emulators and the policy's sampling")
    p.add_argument("--envs", type=count(1), default=8, help="emulators stepped in parallel (default 8)")
    p.add_argument("--out", type=Path, help="write the control record (JSON) here")
    declare_outputs(p, out="file")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE", help=protocol_help)
    p.set_defaults(func=cmd_policy_eval)

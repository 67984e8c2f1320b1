"""`scaleworld` and its commands but the expert and policy groups (experts.py, policy.py). Heavy
libraries are imported inside the handlers so --help is fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scaleworld.cli.args import add_no_progress, check_outputs, declare_outputs, parse_protocol, quiet_torchrl


def cmd_games(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from scaleworld.atari.games import ACTION_NAMES, GAMES

    table = Table(title="Atari 100k games (reference random / human scores; PPO after 10M agent steps)")
    for col in ("game", "ALE id", "legal actions", "random", "human", "PPO", "waits for FIRE"):
        table.add_column(col)
    for g in GAMES.values():
        legal = "all 18" if len(g.legal_actions) == 18 else ", ".join(ACTION_NAMES[a] for a in g.legal_actions)
        table.add_row(g.name, g.ale_id, legal, f"{g.random_score:g}", f"{g.human_score:g}", f"{g.ppo_score:g}",
                      "yes" if g.needs_fire else "")
    Console().print(table)
    print("PPO: CleanRL's benchmark at 40M frames (another protocol: a yardstick for experts, not a target)")


def cmd_data_collect(args: argparse.Namespace) -> None:
    from scaleworld.atari.games import get_game
    from scaleworld.data.collect import collect_dataset
    from scaleworld.experts.policies import make_policy

    game = get_game(args.game)  # fail on a bad name before any heavy import
    protocol = parse_protocol(args.protocol)
    quiet_torchrl()
    policy = make_policy(args.policy, seed=args.seed)
    manifest = collect_dataset(
        game=game, policy=policy, policy_identity=policy.identity, steps=args.steps,
        out=args.out, protocol=protocol, seed=args.seed, num_envs=args.envs,
        progress=not args.no_progress,
    )
    counts = manifest["counts"]
    mean = manifest["returns"]["mean"]
    print(
        f"wrote {args.out}: {counts['steps']} steps, {counts['episodes']} episodes "
        f"({counts['complete_episodes']} complete, mean return "
        f"{'n/a' if mean is None else f'{mean:.2f}'})"
    )


def cmd_data_info(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from scaleworld.data.dataset import UPGRADES, read_manifest

    m = read_manifest(Path(args.dir))
    table = Table(title=f"dataset {args.dir}", show_header=False)
    upgraded = f" (read as {UPGRADES[m['format']]})" if m["format"] in UPGRADES else ""
    complete = m["returns"]["complete_episode_returns"]
    size_mb = sum(f["bytes"] for f in m["files"].values()) / 2**20
    rows = {
        "format": m["format"] + upgraded,
        "game": m["game"]["name"],
        "policy": json.dumps(m["policy"]),
        "steps": m["counts"]["steps"],
        "episodes": f"{m['counts']['episodes']} ({m['counts']['complete_episodes']} complete)",
        "return (complete episodes)": (
            f"mean {sum(complete) / len(complete):.2f}, min {min(complete):g}, max {max(complete):g}"
            if complete else "no complete episode"
        ),
        "protocol": ", ".join(f"{k}={v}" for k, v in m["protocol"].items()),
        "collection": json.dumps(m["collection"]),
        "files": f"{len(m['files'])} files, {size_mb:.1f} MiB",
        "scaleworld": m["scaleworld_version"],
        "created": m["created_utc"],
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    Console().print(table)


def cmd_data_verify(args: argparse.Namespace) -> None:
    from scaleworld.data.dataset import verify_dataset

    quiet_torchrl()
    m = verify_dataset(Path(args.dir))
    print(f"ok: {args.dir}: {len(m['files'])} files match their checksums; "
          f"{m['counts']['steps']} steps in {m['counts']['episodes']} episodes are consistent")


def cmd_eval_score(args: argparse.Namespace) -> None:
    from scaleworld.atari.games import get_game
    from scaleworld.evaluation.scores import score_policy, write_score
    from scaleworld.experts.policies import make_policy

    game = get_game(args.game)
    protocol = parse_protocol(args.protocol)
    policy = make_policy(args.policy, seed=args.seed)
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


def cmd_tokens_encode(args: argparse.Namespace) -> None:
    quiet_torchrl()
    from scaleworld.models.encode import encode_dataset

    m = encode_dataset(tokenizer_dir=args.tokenizer, data_dir=args.data, out=args.out,
                       max_residual=args.max_residual, progress=not args.no_progress)
    q = m["tokenizer"]["quality"]
    print(f"wrote {args.out}: {m['counts']['steps']} frames as {m['tokenizer']['config']['groups']} tokens each "
          f"({m['game']['name']}: residual fraction {q['residual_fraction']:.3f} on {q['frames']} "
          f"{q['frames_from'].replace('_', '-')} frames, allowed {args.max_residual:g})")


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


def cmd_model_ladder(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from scaleworld.models.ladders import ladder_table

    rows = ladder_table(args.name)
    table = Table(title=f"ladder {args.name}",
                  caption="block params: attention + MLP + norms of all blocks; total adds embeddings and heads")
    for col in ("name", "depth", "width", "heads", "block params", "total params"):
        table.add_column(col, justify="right" if col != "name" else "left")
    for r in rows:
        table.add_row(r["name"], str(r["depth"]), str(r["width"]), str(r["heads"]),
                      f"{r['block_params']:,}", f"{r['total_params']:,}")
    Console().print(table)


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k.startswith(("loss_", "val_")))


def _add_train_args(p: argparse.ArgumentParser, *, steps: int | None, lr: float, steps_help: str = "") -> None:
    from scaleworld.study.spec import DataSpec  # light: the defaults are TrainConfig's and the data section's
    from scaleworld.training.config import TrainConfig

    d = TrainConfig()
    p.add_argument("--out", required=True, type=Path, help="run folder (resumes from its checkpoint if present)")
    declare_outputs(p, out="run_folder")
    p.add_argument("--steps", type=int, default=steps, help=f"gradient steps (default {steps_help or steps})")
    p.add_argument("--tokens", type=int, help="budget in tokens instead of --steps (batch x window per step)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"sequences (dynamics) or frames (tokenizer) per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help=f"linear warmup steps (default {d.warmup_steps})")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help=f"held-out evaluation every N steps (default {d.eval_every})")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help=f"atomic checkpoint every N steps (default {d.checkpoint_every})")
    data = DataSpec()
    p.add_argument("--val-fraction", type=float, default=data.val_fraction,
                   help=f"share of episodes held out (default {data.val_fraction})")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds initialisation and sampling")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if visible")
    p.add_argument("--logger", default=d.logger, choices=["csv", "tensorboard", "wandb"],
                   help=f"TorchRL logger (default {d.logger}, in OUT/logs)")
    add_no_progress(p)


def _load(args: argparse.Namespace):
    from scaleworld.study.spec_load import load_spec

    return load_spec(args.spec, args.overrides)


def cmd_validate(args: argparse.Namespace) -> None:
    from scaleworld.study.expand import build_graph

    spec = _load(args)
    graph = build_graph(spec)
    counts = ", ".join(f"{n} {k}" for k, n in graph.counts().items())
    print(f"ok: {args.spec} is valid ({len(spec.games)} games; jobs: {counts}; run_root {spec.run_root})")


def cmd_plan(args: argparse.Namespace) -> None:
    from scaleworld.study.expand import build_graph
    from scaleworld.study.planning import print_summary
    from scaleworld.study.store import RunStore

    spec = _load(args)
    graph = build_graph(spec)
    store = RunStore(Path(spec.run_root))
    calibrated = args.calibrate or args.calibration is not None
    if calibrated:
        from scaleworld.errors import ScaleworldError
        from scaleworld.study.calibration import (
            calibrate,
            estimate,
            load_calibration,
            machine_name,
            save_calibration,
        )

        if args.calibrate and args.seconds <= 0:
            raise ScaleworldError(f"--seconds={args.seconds} must be positive")
        record = None
        if args.calibration is not None and (args.calibration.exists() or not args.calibrate):
            record = load_calibration(args.calibration)
        if args.calibrate and (record is None or record["machine"] != machine_name()):
            record = calibrate(seconds=args.seconds)  # another machine's rates are not this one's
        rows = estimate(graph, record, store=store if store.root.is_dir() else None, measure=args.calibrate,
                        progress=not args.no_progress)
        if args.calibrate and args.calibration is not None:
            save_calibration(record, args.calibration)
    print_summary(store, graph, title=f"plan for {spec.name} ({spec.run_root})", estimate=True,
                  calibrated=calibrated)
    if calibrated:
        from scaleworld.study.planning import print_calibrated

        print_calibrated(rows, record)


def cmd_run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from scaleworld.study.expand import build_graph
    from scaleworld.study.planning import print_summary
    from scaleworld.study.store import RunStore

    spec = _load(args)
    graph = build_graph(spec)
    store = RunStore(Path(spec.run_root))
    if spec.launcher.kind == "slurm":
        from scaleworld.study.slurm import require_cluster

        require_cluster()  # before anything is written
    check_outputs(argparse.Namespace(run_root=store.root, outputs={"run_root": "run_folder"}))
    store.write_plan(graph, OmegaConf.to_yaml(spec))
    if spec.launcher.kind == "slurm":
        from scaleworld.study.slurm import run_slurm

        counts = run_slurm(store, graph, spec.launcher, detach=args.detach)
    else:
        from scaleworld.study.local import default_workers, run_local, visible_gpus

        workers = spec.launcher.workers or default_workers(visible_gpus())
        counts = run_local(store, graph, workers=workers, pack=spec.launcher.pack, progress=not args.no_progress)
    print_summary(store, graph, title=f"{spec.name}: {store.root}", estimate=False)
    return 1 if counts.get("failed") or counts.get("blocked") else 0


def cmd_status(args: argparse.Namespace) -> None:
    from scaleworld.study.planning import print_summary
    from scaleworld.study.store import RunStore

    store = RunStore(Path(args.run_root))
    print_summary(store, store.read_plan(), title=f"status of {args.run_root}", estimate=False)


def cmd_report(args: argparse.Namespace) -> None:
    from rich.console import Console

    from scaleworld.data.files import write_json_atomic
    from scaleworld.report.terminal import collect_results, render

    results = collect_results(args.run_root)
    render(results, Console(width=args.width))
    if args.json:
        write_json_atomic(args.json, results)
        print(f"wrote {args.json}")
    if args.csv:
        from scaleworld.report.export import write_csv

        for path in write_csv(results, args.csv):
            print(f"wrote {path}")
    if args.figures:
        from scaleworld.report.figures import write_figures

        for path in write_figures(results, args.figures):
            print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaleworld",
        description="Scaling studies of transformer world models on Atari 100k.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")

    def spec_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("spec", type=Path, help="a study spec (YAML), e.g. studies/smoke.yaml")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="override spec keys, e.g. train.steps=100 run_root=/scratch/x")

    p = groups.add_parser("run", help="run a study spec end to end (skips finished jobs, resumes the rest)")
    spec_args(p)
    p.add_argument("--detach", action="store_true", help="slurm: submit the ready stage and exit")
    add_no_progress(p, "no progress display")
    p.set_defaults(func=cmd_run)
    p = groups.add_parser("validate", help="check a study spec without running anything")
    spec_args(p)
    p.set_defaults(func=cmd_validate)
    p = groups.add_parser("plan", help="job counts per kind, what is done, and a compute estimate")
    spec_args(p)
    p.add_argument("--calibrate", action="store_true",
                   help="measure every job kind's throughput on this machine (a few seconds per distinct shape) and "
                        "print GPU- and CPU-hours per kind")
    p.add_argument("--calibration", type=Path, metavar="FILE",
                   help="a saved calibration: read it (and, with --calibrate, measure what it lacks and save it)")
    p.add_argument("--seconds", type=float, default=2.0, help="with --calibrate: seconds per measured shape")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while calibrating")
    p.set_defaults(func=cmd_plan)
    p = groups.add_parser("status", help="done / running / failed / pending jobs of a run root")
    p.add_argument("run_root", type=Path, help="a study's run root, e.g. runs/smoke")
    p.set_defaults(func=cmd_status)

    p = groups.add_parser("report", help="what a study found so far: tokenizer quality against its gate, regimes, "
                                         "scaling curves and fits, open-loop PSNR, single vs joint vs matched, "
                                         "normalised control scores with intervals")
    p.add_argument("run_root", type=Path, help="a study's run root, e.g. runs/smoke")
    p.add_argument("--json", type=Path, help="also write every number shown as JSON")
    p.add_argument("--csv", type=Path, help="also write every NLL (mode, game, size, seed) as CSV, and every "
                                            "control run's raw and normalised score into F_control.csv")
    p.add_argument("--figures", type=Path, metavar="DIR",
                   help="also write PNG figures into DIR (curves, scores, and per game real, reconstructed and "
                        "imagined frames)")
    p.add_argument("--width", type=int, help="console width (default: the terminal's)")
    declare_outputs(p, json="file", csv="file", figures="folder")
    p.set_defaults(func=cmd_report)

    p = groups.add_parser("games", help="list the 26 Atari 100k games and their reference scores")
    p.set_defaults(func=cmd_games)

    protocol_help = ("override a protocol setting, e.g. noop_max=0 or sticky_action_prob=0.25 "
                     "(repeatable; see scaleworld/atari/protocol.py)")

    data = groups.add_parser("data", help="offline datasets: collect, info, verify")
    data_cmds = data.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = data_cmds.add_parser("collect", help="play a policy in a game and write an offline dataset")
    p.add_argument("--game", required=True, help="an Atari 100k game, e.g. Pong (see `scaleworld games`)")
    p.add_argument("--policy", default="random", help="the policy that acts (default: random)")
    p.add_argument("--steps", type=int, required=True, help="agent steps to record (Atari 100k: 100000)")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create (must not exist)")
    declare_outputs(p, out="new_folder")
    p.add_argument("--seed", type=int, default=0, help="seeds the emulators, no-op starts and policy")
    p.add_argument("--envs", type=int, default=8, help="emulators stepped in parallel (default 8)")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE", help=protocol_help)
    add_no_progress(p)
    p.set_defaults(func=cmd_data_collect)
    p = data_cmds.add_parser("info", help="summarise a dataset from its manifest")
    p.add_argument("dir", help="dataset folder")
    p.set_defaults(func=cmd_data_info)
    p = data_cmds.add_parser("verify", help="re-check a dataset's checksums and invariants")
    p.add_argument("dir", help="dataset folder")
    p.set_defaults(func=cmd_data_verify)

    ev = groups.add_parser("eval", help="evaluation: policy scores in the real game, world-model fidelity")
    ev_cmds = ev.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = ev_cmds.add_parser("score", help="score a policy over full episodes (e.g. the random anchor)")
    p.add_argument("--game", required=True, help="an Atari 100k game, e.g. Pong")
    p.add_argument("--policy", default="random", help="the policy to score (default: random)")
    p.add_argument("--episodes", type=int, default=10, help="full episodes to play (default 10)")
    p.add_argument("--out", type=Path, help="write the score record (JSON) here")
    declare_outputs(p, out="file")
    p.add_argument("--seed", type=int, default=0, help="seeds the emulators, no-op starts and policy")
    p.add_argument("--envs", type=int, default=8, help="emulators stepped in parallel (default 8)")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE", help=protocol_help)
    p.set_defaults(func=cmd_eval_score)

    p = ev_cmds.add_parser("fidelity", help="world-model fidelity on held-out episodes (NLL, reward, rollouts)")
    p.add_argument("--dynamics", required=True, type=Path, help="dynamics run folder")
    p.add_argument("--tokenizer", required=True, type=Path, help="tokenizer run folder")
    p.add_argument("--tokens", dest="tokens_data", required=True, nargs="+", type=Path,
                   help="token dataset(s) of the model's games")
    from scaleworld.study.spec import FidelitySpec  # light: the defaults are the spec's fidelity section's

    f = FidelitySpec()
    p.add_argument("--context-steps", type=int, default=f.context_steps,
                   help=f"real steps before imagining (default {f.context_steps})")
    p.add_argument("--horizon", type=int, default=f.horizon,
                   help=f"imagined steps scored per rollout (default {f.horizon})")
    p.add_argument("--rollouts", type=int, default=f.rollouts,
                   help=f"open-loop rollouts per game (default {f.rollouts})")
    p.add_argument("--seed", type=int, default=f.seed, help=f"seeds the choice of rollout starts (default {f.seed})")
    p.add_argument("--out", type=Path, help="write the fidelity record (JSON) here")
    declare_outputs(p, out="file")
    p.set_defaults(func=cmd_eval_fidelity)

    from scaleworld.cli.experts import add_expert_parser
    from scaleworld.cli.policy import add_policy_parser

    add_expert_parser(groups, protocol_help=protocol_help)
    add_policy_parser(groups, protocol_help=protocol_help)

    train = groups.add_parser("train", help="train the world model: tokenizer, dynamics")
    train_cmds = train.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = train_cmds.add_parser("tokenizer", help="train the categorical tokenizer on pixel datasets")
    p.add_argument("--data", required=True, nargs="+", type=Path,
                   help="pixel dataset(s): one game = per_game scope, several = shared")
    from scaleworld.models.tokenizer_config import FRAMES_PER_GAME, MAX_RESIDUAL_FRACTION, TokenizerConfig
    from scaleworld.study.spec import TokenizerSpec, TrainSpec
    from scaleworld.training.config import TrainConfig

    widths = list(TokenizerConfig.channels)
    p.add_argument("--channels", type=int, nargs="+", default=widths,
                   help=f"conv widths, each stage halving the frame (default {' '.join(map(str, widths))})")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seeds the train/held-out episode split (use the dynamics runs' split)")
    _add_train_args(p, steps=None, lr=TokenizerSpec().lr, steps_help=f"{FRAMES_PER_GAME:,} frames of every game")
    p.set_defaults(func=cmd_train_tokenizer)
    p = train_cmds.add_parser("dynamics", help="train a dynamics transformer on token datasets")
    p.add_argument("--tokens-data", "--data", dest="tokens_data", required=True, nargs="+", type=Path,
                   help="token dataset(s): one game = single mode, several = joint (balanced games)")
    p.add_argument("--size", default="tiny-d1", help="a ladder size, e.g. paper-d12 (see `scaleworld model ladder`)")
    from scaleworld.models.dynamics_config import DynamicsConfig  # light: no torch

    p.add_argument("--context", type=int, default=DynamicsConfig.context,
                   help=f"attention window = training sequence length (default {DynamicsConfig.context})")
    p.add_argument("--split-seed", type=int, default=0, help="seeds the train/held-out episode split")
    from scaleworld.training.config import MATCH_RULES

    p.add_argument("--match", choices=list(MATCH_RULES),
                   help="matched-budget single run: derive steps from a joint run's --steps and --joint-games "
                        "(data: as tokens_per_game, on a dataset of --joint-games x the usual steps you collected)")
    p.add_argument("--joint-games", type=int, default=26, help="games of the joint run being matched")
    from scaleworld.data.windows import WINDOWS
    from scaleworld.models.dynamics_config import TERMINATION_TARGETS

    p.add_argument("--termination", choices=TERMINATION_TARGETS, default=TERMINATION_TARGETS[0],
                   help=f"what the termination head learns: game_over, or life_loss (a game over or a lost life) "
                        f"(default {TERMINATION_TARGETS[0]})")
    p.add_argument("--validation-fraction", type=float, default=TrainSpec().validation_fraction,
                   help="share of the training episodes held out to pick the best checkpoint, saved beside the "
                        "final one as dynamics_best.pt (default 0: none)")
    p.add_argument("--windows", choices=WINDOWS, default=WINDOWS[0],
                   help=f"training windows: inside episodes, or edge_fair (clipped at episode ends: first and "
                        f"terminal steps as often as any) (default {WINDOWS[0]})")
    _add_train_args(p, steps=2000, lr=TrainConfig().lr)
    p.set_defaults(func=cmd_train_dynamics)

    tokens = groups.add_parser("tokens", help="token datasets: encode")
    tokens_cmds = tokens.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = tokens_cmds.add_parser("encode", help="encode a pixel dataset with a frozen tokenizer")
    p.add_argument("--tokenizer", required=True, type=Path, help="tokenizer run folder")
    p.add_argument("--data", required=True, type=Path, help="pixel dataset")
    p.add_argument("--out", required=True, type=Path, help="token dataset folder to create")
    declare_outputs(p, out="new_folder")
    p.add_argument("--max-residual", type=float, default=MAX_RESIDUAL_FRACTION,
                   help="refuse a tokenizer whose residual fraction for the game (share of the frames' variance "
                        f"its codes leave unexplained) is above this (default {MAX_RESIDUAL_FRACTION})")
    add_no_progress(p)
    p.set_defaults(func=cmd_tokens_encode)

    model = groups.add_parser("model", help="model sizes: ladder")
    model_cmds = model.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = model_cmds.add_parser("ladder", help="print a size ladder with computed parameter counts")
    p.add_argument("name", help="paper, small or tiny")
    p.set_defaults(func=cmd_model_ladder)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from scaleworld.version import __version__

        print(f"scaleworld {__version__}")
        return 0
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    from scaleworld.errors import ScaleworldError

    try:
        check_outputs(args)
        status = args.func(args)
    except ScaleworldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused mid-way (disk full, a folder removed): one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc} ({type(exc).__name__}): free space or fix the path, "
              "then run the command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status or 0


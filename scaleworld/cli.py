"""The `scaleworld` command. Heavy libraries are imported inside the handlers so --help is fast."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any


def _protocol(pairs: list[str]):
    """Build a Protocol from --protocol KEY=VALUE pairs, coercing to each field's type."""
    from scaleworld.atari.protocol import Protocol
    from scaleworld.errors import ScaleworldError

    types = {f.name: type(f.default) for f in dataclasses.fields(Protocol)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in types:
            raise ScaleworldError(
                f"--protocol {pair!r}: expected KEY=VALUE with KEY one of {', '.join(types)}"
            )
        kind = types[key]
        try:
            values[key] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
        except ValueError:
            raise ScaleworldError(f"--protocol {pair!r}: {raw!r} is not a {kind.__name__}") from None
    return Protocol(**values)


def _quiet_torchrl() -> None:
    """TorchRL logs every storage initialisation at INFO; keep the CLI's output to its own."""
    import os

    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")


def cmd_games(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from scaleworld.atari.games import ACTION_NAMES, GAMES

    table = Table(title="Atari 100k games (reference random / human scores)")
    for col in ("game", "ALE id", "legal actions", "random", "human"):
        table.add_column(col)
    for g in GAMES.values():
        legal = "all 18" if len(g.legal_actions) == 18 else ", ".join(ACTION_NAMES[a] for a in g.legal_actions)
        table.add_row(g.name, g.ale_id, legal, f"{g.random_score:g}", f"{g.human_score:g}")
    Console().print(table)


def cmd_data_collect(args: argparse.Namespace) -> None:
    from scaleworld.atari.games import get_game
    from scaleworld.data.collect import collect_dataset
    from scaleworld.experts.policies import make_policy

    game = get_game(args.game)  # fail on a bad name before any heavy import
    protocol = _protocol(args.protocol)
    _quiet_torchrl()
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

    from scaleworld.data.dataset import read_manifest

    m = read_manifest(Path(args.dir))
    table = Table(title=f"dataset {args.dir}", show_header=False)
    complete = m["returns"]["complete_episode_returns"]
    size_mb = sum(f["bytes"] for f in m["files"].values()) / 2**20
    rows = {
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

    _quiet_torchrl()
    m = verify_dataset(Path(args.dir))
    print(f"ok: {args.dir}: {len(m['files'])} files match their checksums; "
          f"{m['counts']['steps']} steps in {m['counts']['episodes']} episodes are consistent")


def cmd_eval_score(args: argparse.Namespace) -> None:
    from scaleworld.atari.games import get_game
    from scaleworld.evaluation.scores import score_policy, write_score
    from scaleworld.experts.policies import make_policy

    game = get_game(args.game)
    protocol = _protocol(args.protocol)
    policy = make_policy(args.policy, seed=args.seed)
    record = score_policy(
        game=game, policy=policy, policy_identity=policy.identity, episodes=args.episodes,
        protocol=protocol, seed=args.seed, num_envs=args.envs,
    )
    if args.out:
        write_score(record, args.out)
    print(f"{game.name} {args.policy}: mean {record['mean']:.2f} +- {record['sem']:.2f} (sem) "
          f"over {args.episodes} episodes" + (f"; wrote {args.out}" if args.out else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaleworld",
        description="Scaling studies of transformer world models on Atari 100k.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")

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
    p.add_argument("--seed", type=int, default=0, help="seeds the emulators, no-op starts and policy")
    p.add_argument("--envs", type=int, default=8, help="emulators stepped in parallel (default 8)")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE", help=protocol_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_collect)
    p = data_cmds.add_parser("info", help="summarise a dataset from its manifest")
    p.add_argument("dir", help="dataset folder")
    p.set_defaults(func=cmd_data_info)
    p = data_cmds.add_parser("verify", help="re-check a dataset's checksums and invariants")
    p.add_argument("dir", help="dataset folder")
    p.set_defaults(func=cmd_data_verify)

    ev = groups.add_parser("eval", help="evaluation: policy scores in the real game")
    ev_cmds = ev.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = ev_cmds.add_parser("score", help="score a policy over full episodes (e.g. the random anchor)")
    p.add_argument("--game", required=True, help="an Atari 100k game, e.g. Pong")
    p.add_argument("--policy", default="random", help="the policy to score (default: random)")
    p.add_argument("--episodes", type=int, default=10, help="full episodes to play (default 10)")
    p.add_argument("--out", type=Path, help="write the score record (JSON) here")
    p.add_argument("--seed", type=int, default=0, help="seeds the emulators, no-op starts and policy")
    p.add_argument("--envs", type=int, default=8, help="emulators stepped in parallel (default 8)")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE", help=protocol_help)
    p.set_defaults(func=cmd_eval_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from scaleworld import __version__

        print(f"scaleworld {__version__}")
        return 0
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    from scaleworld.errors import ScaleworldError

    try:
        args.func(args)
    except ScaleworldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

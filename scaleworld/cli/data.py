"""`scaleworld games | data | tokens | model`: the game table, offline datasets, token datasets and
the size ladders.

Handlers import the heavy libraries themselves, so `scaleworld --help` is fast; a `ScaleworldError`
is one line and exit 2 (cli/main.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scaleworld.cli.args import add_no_progress, count, declare_outputs, parse_protocol, quiet_torchrl, real


def cmd_games(args: argparse.Namespace) -> None:
    from rich.table import Table

    from scaleworld.atari.games import ACTION_NAMES, GAMES
    from scaleworld.console import console

    table = Table(title="Atari 100k games (reference random / human scores; PPO after 10M agent steps)")
    for col in ("game", "ALE id", "legal actions", "random", "human", "PPO", "waits for FIRE"):
        table.add_column(col)
    for g in GAMES.values():
        legal = "all 18" if len(g.legal_actions) == 18 else ", ".join(ACTION_NAMES[a] for a in g.legal_actions)
        table.add_row(g.name, g.ale_id, legal, f"{g.random_score:g}", f"{g.human_score:g}", f"{g.ppo_score:g}",
                      "yes" if g.needs_fire else "")
    console().print(table)
    print("PPO: CleanRL's benchmark at 40M frames (another protocol: a yardstick for experts, not a target)")


def cmd_data_collect(args: argparse.Namespace) -> None:
    from scaleworld.atari.games import get_game
    from scaleworld.data.collect import collect_dataset
    from scaleworld.experts.policies import make_policy

    game = get_game(args.game)  # fail on a bad name before any heavy import
    protocol = parse_protocol(args.protocol)
    quiet_torchrl()
    policy = make_policy(args.policy, seed=args.seed, protocol=protocol)
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
    from rich.table import Table

    from scaleworld.console import console
    from scaleworld.data.layout import UPGRADES, read_manifest

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
    console().print(table)


def cmd_data_verify(args: argparse.Namespace) -> None:
    from scaleworld.data.dataset import verify_dataset

    quiet_torchrl()
    m = verify_dataset(Path(args.dir))
    print(f"ok: {args.dir}: {len(m['files'])} files match their checksums; "
          f"{m['counts']['steps']} steps in {m['counts']['episodes']} episodes are consistent")


def cmd_tokens_encode(args: argparse.Namespace) -> None:
    quiet_torchrl()
    from scaleworld.models.encode import encode_dataset

    m = encode_dataset(tokenizer_dir=args.tokenizer, data_dir=args.data, out=args.out,
                       max_residual=args.max_residual, progress=not args.no_progress)
    q = m["tokenizer"]["quality"]
    print(f"wrote {args.out}: {m['counts']['steps']} frames as {m['tokenizer']['config']['groups']} tokens each "
          f"({m['game']['name']}: residual fraction {q['residual_fraction']:.3f} on {q['frames']} "
          f"{q['frames_from'].replace('_', '-')} frames, allowed {args.max_residual:g})")


def cmd_model_ladder(args: argparse.Namespace) -> None:
    from rich.table import Table

    from scaleworld.console import console
    from scaleworld.models.ladders import ladder_table

    rows = ladder_table(args.name)
    table = Table(title=f"ladder {args.name}",
                  caption="block params: attention + MLP + norms of all blocks; total adds embeddings and heads")
    for col in ("name", "depth", "width", "heads", "block params", "total params"):
        table.add_column(col, justify="right" if col != "name" else "left")
    for r in rows:
        table.add_row(r["name"], str(r["depth"]), str(r["width"]), str(r["heads"]),
                      f"{r['block_params']:,}", f"{r['total_params']:,}")
    console().print(table)


def add_games_parser(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("games", help="list the 26 Atari 100k games and their reference scores")
    p.set_defaults(func=cmd_games)


def add_data_parser(groups: argparse._SubParsersAction, *, protocol_help: str) -> None:
    from scaleworld.study.spec import DataSpec  # light: the defaults are the spec's data section's

    spec = DataSpec()
    data = groups.add_parser("data", help="offline datasets: collect, info, verify")
    data_cmds = data.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = data_cmds.add_parser("collect", help="play a policy in a game and write an offline dataset")
    p.add_argument("--game", required=True, help="an Atari 100k game, e.g. Pong (see `scaleworld games`)")
    p.add_argument("--policy", default="random", help="the policy that acts (default: random)")
    p.add_argument("--steps", type=count(1), required=True, help="agent steps to record (Atari 100k: 100000)")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create (must not exist)")
    declare_outputs(p, out="new_folder")
    p.add_argument("--seed", type=count(0), default=spec.seed, help="seeds the emulators, no-op starts and policy")
    p.add_argument("--envs", type=count(1), default=spec.num_envs,
                   help=f"emulators stepped in parallel (default {spec.num_envs})")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE", help=protocol_help)
    add_no_progress(p)
    p.set_defaults(func=cmd_data_collect)
    p = data_cmds.add_parser("info", help="summarise a dataset from its manifest")
    p.add_argument("dir", help="dataset folder")
    p.set_defaults(func=cmd_data_info)
    p = data_cmds.add_parser("verify", help="re-check a dataset's checksums and invariants")
    p.add_argument("dir", help="dataset folder")
    p.set_defaults(func=cmd_data_verify)


def add_tokens_parser(groups: argparse._SubParsersAction) -> None:
    from scaleworld.models.tokenizer_config import MAX_RESIDUAL_FRACTION  # light: no torch

    tokens = groups.add_parser("tokens", help="token datasets: encode")
    tokens_cmds = tokens.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = tokens_cmds.add_parser("encode", help="encode a pixel dataset with a frozen tokenizer")
    p.add_argument("--tokenizer", required=True, type=Path, help="tokenizer run folder")
    p.add_argument("--data", required=True, type=Path, help="pixel dataset")
    p.add_argument("--out", required=True, type=Path, help="token dataset folder to create")
    declare_outputs(p, out="new_folder")
    p.add_argument("--max-residual", type=real(0, low_open=True), default=MAX_RESIDUAL_FRACTION,
                   help="refuse a tokenizer whose residual fraction for the game (share of the frames' variance "
                        f"its codes leave unexplained) is above this (default {MAX_RESIDUAL_FRACTION})")
    add_no_progress(p)
    p.set_defaults(func=cmd_tokens_encode)


def add_model_parser(groups: argparse._SubParsersAction) -> None:
    model = groups.add_parser("model", help="model sizes: ladder")
    model_cmds = model.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = model_cmds.add_parser("ladder", help="print a size ladder with computed parameter counts")
    p.add_argument("name", help="paper, small or tiny")
    p.set_defaults(func=cmd_model_ladder)

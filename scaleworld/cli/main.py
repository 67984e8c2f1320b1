"""`scaleworld`: the parser, assembled from the command modules (study.py, data.py, world_model.py,
experts.py, policy.py), and the one place errors become one line and exit 2. Heavy libraries are
imported inside the handlers so --help is fast."""

from __future__ import annotations

import argparse
import os
import sys

from scaleworld.cli.args import OneLineParser, check_outputs, interrupted_line
from scaleworld.cli.data import add_data_parser, add_games_parser, add_model_parser, add_tokens_parser
from scaleworld.cli.experts import add_expert_parser
from scaleworld.cli.policy import add_policy_parser
from scaleworld.cli.study import add_study_parsers
from scaleworld.cli.world_model import add_eval_parser, add_train_parser

PROTOCOL_HELP = ("override a protocol setting, e.g. noop_max=0 or sticky_action_prob=0.25 "
                 "(repeatable; see scaleworld/atari/protocol.py)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="scaleworld",
        description="Scaling studies of transformer world models on Atari 100k.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    add_study_parsers(groups)  # run, validate, plan, status, report
    add_games_parser(groups)
    add_data_parser(groups, protocol_help=PROTOCOL_HELP)
    add_eval_parser(groups, protocol_help=PROTOCOL_HELP)
    add_expert_parser(groups, protocol_help=PROTOCOL_HELP)
    add_policy_parser(groups, protocol_help=PROTOCOL_HELP)
    add_train_parser(groups)
    add_tokens_parser(groups)
    add_model_parser(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a bad option: its one line is printed (OneLineParser)
        return exc.code if isinstance(exc.code, int) else 2
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
    except BrokenPipeError:  # the reader left (`| head`): nothing is wrong, and nothing more can be said
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush is silent too
        return 0
    except OSError as exc:  # the file system refused mid-way (disk full, a folder removed): one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc} ({type(exc).__name__}): free space or fix the path, "
              "then run the command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_line(args), file=sys.stderr)
        return 130
    return status or 0


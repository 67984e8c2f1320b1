"""The `scaleworld` command: `main` (argparse, in main.py) and one module per command group
(experts.py, policy.py), sharing args.py. Heavy libraries are imported inside the handlers."""

from scaleworld.cli.main import build_parser, main

__all__ = ["build_parser", "main"]

"""Which Atari 100k games wait for FIRE before they start: the game table's `needs_fire` column.

For every game whose minimal action set holds FIRE: rewards, life losses and game ends in
--steps agent steps of NOOP from a reset, with and without one FIRE first
(`scaleworld.atari.envs.events_after_reset`). A game needs FIRE when nothing happens without it
and something does with it. Prints one line per game and the games the table should flag.

Usage: .venv/bin/python tools/probe_fire.py [--steps 2000]
"""

from __future__ import annotations

import argparse

from scaleworld.atari.envs import FIRE, events_after_reset
from scaleworld.atari.games import GAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    needs = []
    for game in GAMES.values():
        if FIRE not in game.legal_actions:
            print(f"{game.name:<16} no FIRE in its action set")
            continue
        without = events_after_reset(game, steps=args.steps, fire_first=False)
        with_fire = events_after_reset(game, steps=args.steps, fire_first=True)
        verdict = without == 0 and with_fire > 0
        needs += [game.name] if verdict else []
        print(f"{game.name:<16} events without FIRE {without:4d}, with FIRE first {with_fire:4d}"
              f"{'   needs FIRE' if verdict else ''}   (table: {game.needs_fire})", flush=True)
    print(f"needs FIRE: {', '.join(needs) or 'none'}; table: "
          f"{', '.join(g.name for g in GAMES.values() if g.needs_fire) or 'none'}")


if __name__ == "__main__":
    main()

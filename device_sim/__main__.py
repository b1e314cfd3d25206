"""`python -m device_sim COMMAND`: drive the synthetic user from the shell.

Each command parses its arguments, calls one library function and prints; library errors (`ForgetError`)
become a one-line message on stderr and the error's exit code, as in `assistant-forget`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Callable

from assistant_forget.core.errors import BadInput, ForgetError

Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: list[Command] = []


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register `fn(args) -> exit code` as the subcommand `name`."""

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.append((name, help, configure, fn))
        return fn

    return deco


def _iso_date(s: str) -> date:
    """A YYYY-MM-DD argument; BadInput otherwise."""
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise BadInput(f"--start must be a date like 2026-01-01, got {s!r}") from None


# -- commands -------------------------------------------------------------------------------------

def _configure_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=int, required=True, help="number of local days to generate")
    p.add_argument("--seed", type=int, required=True, help="seed of the persona and of its days")
    p.add_argument("--start", default="2026-01-01", help="first local day, YYYY-MM-DD (default 2026-01-01)")
    p.add_argument("--mean", type=float, default=20.0, help="mean utterances per day over a week (default 20)")
    p.add_argument("--canary", action="append", default=[], metavar="TEXT@DAY*REPEATS",
                   help="plant TEXT REPEATS times on DAY (index from 0, or YYYY-MM-DD); repeatable")
    p.add_argument("--no-travel", action="store_true", help="stay home: no trip abroad")
    p.add_argument("--out", type=Path, required=True, help="JSONL file to write")


@command("generate", "write N days of a synthetic user's utterances as JSONL", _configure_generate)
def cmd_generate(args: argparse.Namespace) -> int:
    from .canary import parse_canary_spec
    from .generator import format_summary, generate_log

    summary = generate_log(args.out, days=args.days, seed=args.seed, start=_iso_date(args.start),
                           mean_per_day=args.mean, canaries=[parse_canary_spec(c) for c in args.canary],
                           travel=not args.no_travel)
    print(format_summary(summary))
    return 0


def _configure_run(p: argparse.ArgumentParser) -> None:
    from .simulate import add_arguments

    add_arguments(p)


@command("run", "live through N days on a simulated device: speak, learn nightly, forget, report", _configure_run)
def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .report import format_summary, percent
    from .simulate import config_from_args, run

    cfg = config_from_args(args)
    with tqdm(total=cfg.days, desc="simulate", unit="day", file=sys.stderr, disable=None) as bar:

        def tick(day) -> None:
            bar.set_postfix_str(f"{day.date} accuracy {percent(day.accuracy)}", refresh=False)
            bar.update(1)

        result = run(cfg, tick)
    print(format_summary(result))
    return 0


# -- entry point ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m device_sim",
                                     description="A synthetic user whose phone logs what it says to the assistant.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help, configure, fn in COMMANDS:
        p = sub.add_parser(name, help=help, description=help)
        configure(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ForgetError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())

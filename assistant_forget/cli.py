"""The `assistant-forget` command line: each command parses its arguments, calls one library function, prints.

Errors from the library (`ForgetError`) become a one-line message on stderr and the error's exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from .errors import ForgetError

Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: list[Command] = []


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register `fn(args) -> exit code` as the subcommand `name`."""

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.append((name, help, configure, fn))
        return fn

    return deco


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", required=True, type=Path, help="device directory")


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


# -- commands -------------------------------------------------------------------------------------

def _configure_init(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--seed", type=int, default=None, help="device seed (default 0); fixed at creation")


@command("init", "create an empty device directory with a seed", _configure_init)
def cmd_init(args: argparse.Namespace) -> int:
    from .device import DEFAULT_SEED, Device

    dev = Device.create(args.device, DEFAULT_SEED if args.seed is None else args.seed)
    print(f"created device {dev.root} (seed {dev.seed})")
    return 0


def _configure_status(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("status", "show utterances per local day and the state of the model", _configure_status)
def cmd_status(args: argparse.Namespace) -> int:
    from .status import device_status, format_status

    st = device_status(args.device)
    if args.json:
        _print_json(st)
    else:
        print(format_status(st))
    return 0


# -- entry point ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant-forget",
        description="Let an on-device assistant forget a day, a range, an utterance or a person, and prove it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help, configure, fn in COMMANDS:
        p = sub.add_parser(name, help=help, description=help)
        configure(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ForgetError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

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
    p.add_argument("--source", default="generator", choices=("generator", "clinc150"),
                   help="what the persona says: the generator's phrasings, or real crowd-sourced CLINC150 "
                        "val/test utterances with the persona's rhythm (default generator)")
    p.add_argument("--out", type=Path, required=True, help="JSONL file to write")


@command("generate", "write N days of a synthetic user's utterances as JSONL", _configure_generate)
def cmd_generate(args: argparse.Namespace) -> int:
    from .canary import parse_canary_spec
    from .generator import format_summary, generate_log

    canaries = [parse_canary_spec(c) for c in args.canary]
    if args.source == "clinc150":
        from .real import format_real_summary, generate_real_log

        print(format_real_summary(generate_real_log(args.out, days=args.days, seed=args.seed,
                                                    start=_iso_date(args.start), mean_per_day=args.mean,
                                                    canaries=canaries, travel=not args.no_travel)))
        return 0
    summary = generate_log(args.out, days=args.days, seed=args.seed, start=_iso_date(args.start),
                           mean_per_day=args.mean, canaries=canaries, travel=not args.no_travel)
    print(format_summary(summary))
    return 0


def _configure_run(p: argparse.ArgumentParser) -> None:
    from .simulate import add_arguments

    add_arguments(p)
    p.add_argument("--family", default="assistant", choices=("assistant", "hf-causal-lm"),
                   help="the device's model: the assistant (default) or the shipped causal LM with LoRA adapters "
                        "(device_sim/lm.py: trains nightly, forgets the day of a secret, reports)")


@command("run", "live through N days on a simulated device: speak, learn nightly, forget, report", _configure_run)
def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.family == "hf-causal-lm":
        return _run_lm(args)
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


def _run_lm(args: argparse.Namespace) -> int:
    """`run --family hf-causal-lm` (device_sim/lm.py)."""
    from .lm import LMRunConfig, format_lm_report, run_lm

    cfg = LMRunConfig(device=args.device, days=args.days, seed=args.seed, start=_iso_date(args.start),
                      mean=args.mean, report=args.report, fresh=args.fresh)
    print(format_lm_report(run_lm(cfg)))
    return 0


def _configure_fleet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=16, help="devices in the fleet (default 16)")
    p.add_argument("--days", type=int, default=30, help="days each device lives (default 30)")
    p.add_argument("--seed", type=int, default=0, help="the fleet's seed: every device's persona and habits")
    p.add_argument("--mean", type=float, default=20.0, help="the fleet's mean utterances per day (default 20)")
    p.add_argument("--start", default="2026-01-01", help="first local day, YYYY-MM-DD (default 2026-01-01)")
    p.add_argument("--out", type=Path, required=True, help="fleet directory: devices/, fleet.json, fleet.png")
    p.add_argument("--workers", type=int, default=None, help="processes, or a local Ray's CPUs (default: all)")
    p.add_argument("--ray", action="store_true", help="run the devices on a local Ray instance")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="run them on the Ray cluster at ADDR")


@command("fleet", "simulate N devices (personas) living D days through an executor; a fleet report", _configure_fleet)
def cmd_fleet(args: argparse.Namespace) -> int:
    from assistant_forget.core.ray_executor import make_executor

    from .fleet import fleet_specs, format_report, run_fleet

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise BadInput(f"{args.out} already exists and is not empty; choose another --out")
    specs = fleet_specs(args.out.resolve(), args.devices, args.days, args.seed, args.mean, _iso_date(args.start))
    with make_executor(ray=args.ray, address=args.ray_address, workers=args.workers) as ex:
        if hasattr(ex, "start"):  # a Ray executor: connect (or say what is missing) before writing anything
            ex.start()
        args.out.mkdir(parents=True, exist_ok=True)
        print(format_report(run_fleet(args.out, specs, ex)))
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

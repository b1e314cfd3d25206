"""`assistant-forget simulate`: the simulator's command, added to the CLI through the `assistant_forget.commands`
entry point (pyproject.toml), so that the library never imports the simulator."""

from __future__ import annotations

import argparse


def _configure(p: argparse.ArgumentParser) -> None:
    from .__main__ import _configure_run

    _configure_run(p)  # the options of `python -m device_sim run`, --family included


def _run(args: argparse.Namespace) -> int:
    from assistant_forget.cli import progress_bar

    if args.family == "hf-causal-lm":
        from .__main__ import _run_lm

        return _run_lm(args)

    from .report import format_summary
    from .simulate import config_from_args, run

    cfg = config_from_args(args)
    tick, bar = progress_bar("simulate")
    with bar:
        bar.reset(total=cfg.days)
        result = run(cfg, lambda day: tick(day.date))
    print(format_summary(result))
    return 0


SIMULATE = ("simulate", "live through N days of a synthetic user on a new device (= python -m device_sim run)",
            _configure, _run)

"""`assistant-forget serve`: the dashboard's command, added to the CLI through the `assistant_forget.commands`
entry point (pyproject.toml), so that the command line never imports the web stack unless it is run."""

from __future__ import annotations

import argparse
from pathlib import Path


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", required=True, type=Path, help="device directory")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")


def _run(args: argparse.Namespace) -> int:
    try:
        from .server import serve
    except ImportError as e:
        from ..core.errors import ForgetError

        raise ForgetError(f"the dashboard needs its web packages ({e.name} is missing): "
                          "pip install 'assistant-forget[dashboard]'") from None
    return serve(args.device, args.port)


SERVE = ("serve", "a local web dashboard: the calendar of days, forget with a preview, receipts and proof",
         _configure, _run)

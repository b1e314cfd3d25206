"""The `assistant-forget` command line: each command parses its arguments, calls one library function, prints.

Every failure is ONE line on stderr, starting with "error: ", and a documented exit code, never a traceback:

    0    success (`verify`: every check passed)
    1    `verify`: a check failed
    2    bad input (ForgetError, BadInput, a bad argument), or the file system refused (OSError: the message
         names the file when known, else the command and the device directory)
    3    no such device          4  corrupt or tampered file (named)
    5    nothing matched         6  device busy
    70   internal error: an unexpected exception, i.e. a bug (EX_SOFTWARE of sysexits.h); set
         ASSISTANT_FORGET_DEBUG=1 to see the traceback
    130  interrupted (Ctrl-C)
    141  stdout or stderr was closed early (`status | head -1`): exits quietly, as when a Unix tool is killed
         by SIGPIPE (128 + 13). SIGPIPE itself stays ignored (Python's default), so a closed pipe never kills a
         command halfway through a write; the command stops at its next output instead.

stdout and stderr are written as UTF-8 whatever the locale (LC_ALL=C included), with characters that cannot
be written escaped, so printing non-ASCII text never fails.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import io
import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import Callable, NoReturn

from .core.errors import ForgetError

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


def _printable(text: str) -> str:
    r"""`text` on one terminal line: control, format (invisible) and line-separator characters as \uXXXX.

    >>> _printable("dr\u200balvarez\n\x1b[31m")
    'dr\\u200balvarez\\u000a\\u001b[31m'
    """
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)


# -- commands -------------------------------------------------------------------------------------

def _configure_init(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--seed", type=int, default=None, help="device seed (default 0); fixed at creation")
    p.add_argument("--family", default="assistant", choices=("assistant", "hf-causal-lm"),
                   help="the model the device personalises: the assistant (default), or a Hugging Face causal LM "
                        "with per-day LoRA adapters (docs/lm.md); recorded, every command then uses it")
    p.add_argument("--base-model", type=Path, metavar="DIR", help="hf-causal-lm: a local Hugging Face model "
                                                                  "directory (default: the shipped models/lm-tiny)")
    p.add_argument("--lora-rank", type=int, metavar="R", help="hf-causal-lm: LoRA rank (default 4)")
    p.add_argument("--lora-alpha", type=float, metavar="A", help="hf-causal-lm: LoRA alpha (default 8)")
    p.add_argument("--lora-targets", metavar="LIST", help="hf-causal-lm: comma-separated module names the "
                                                          "adapters wrap (default q_proj,v_proj; GPT-2: c_attn)")
    p.add_argument("--epochs", type=int, metavar="N", help="hf-causal-lm: passes over a day (default 3)")
    p.add_argument("--lr", type=float, metavar="LR", help="hf-causal-lm: learning rate of a day (default 5e-3)")


@command("init", "create an empty device directory with a seed (and a model family)", _configure_init)
def cmd_init(args: argparse.Namespace) -> int:
    from .api import init

    lora = {k: v for k, v in (("rank", args.lora_rank), ("alpha", args.lora_alpha),
                              ("target_modules", None if args.lora_targets is None else
                               tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())))
            if v is not None}
    train = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    res = init(args.device, args.seed, args.family, args.base_model, lora, train)
    print(f"created device {res['device']} (seed {res['seed']})"
          + (f", family {res['family']} on {res['base_model']}" if res["family"] != "assistant" else ""))
    return 0


def _configure_status(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("status", "show utterances per local day and the state of the model", _configure_status)
def cmd_status(args: argparse.Namespace) -> int:
    from .runner.status import device_status, format_status

    st = device_status(args.device)
    if args.json:
        _print_json(st)
    else:
        print(format_status(st))
    return 0


def progress_bar(desc: str):
    """A tqdm bar on stderr fed one day at a time; returns (callback, close)."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="day", file=sys.stderr, disable=None, leave=False)
    return (lambda day: (bar.set_postfix_str(day, refresh=False), bar.update(1))), bar


def _configure_train(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--until", metavar="DATE", help="train days up to this local date (YYYY-MM-DD), default all")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("train", "personalise the model on every day not yet trained, then re-export", _configure_train)
def cmd_train(args: argparse.Namespace) -> int:
    from .api import train

    tick, bar = progress_bar("train")
    with bar:
        res = train(args.device, args.until, tick, on_plan=lambda plan: bar.reset(total=len(plan.days)))
    if args.json:
        _print_json(res)
    elif res["trained_days"]:
        how = f" (replayed from checkpoint {res['rewound_to']})" if res["rewound_to"] else ""
        print(f"trained {len(res['trained_days'])} day(s){how}; model version {res['version']}")
    else:
        print(f"nothing to train; model version {res['version']}")
    return 0


def _configure_maintain(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("maintain", "run pending exact forgetting passes (the phone does this while charging)", _configure_maintain)
def cmd_maintain(args: argparse.Namespace) -> int:
    from .api import maintain

    tick, bar = progress_bar("exact pass")
    with bar:
        res = maintain(args.device, tick)
    if args.json:
        _print_json(res or {"pending": False})
    else:
        print("no pending exact pass" if res is None else
              f"exact pass done from {res['replayed_from']}; model version {res['version_after']}")
    return 0


def _configure_export(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--format", default=None,
                   help="comma-separated, onnx required: onnx,onnx-int8,coreml (default: the current formats)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("export", "export the current model for the app (ONNX, CoreML), replacing the old export", _configure_export)
def cmd_export(args: argparse.Namespace) -> int:
    from .api import export

    res = export(args.device, args.format)
    if args.json:
        _print_json(res)
    else:
        print(f"exported {', '.join(res['formats'])}: version {res['export_version']}")
    return 0


def _configure_forget(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    g = p.add_argument_group("selector (exactly one)")
    g.add_argument("--date", metavar="DATE", help="a local day, YYYY-MM-DD")
    g.add_argument("--from", dest="start", metavar="DATE", help="first day of a range (with --to)")
    g.add_argument("--to", dest="end", metavar="DATE", help="last day of a range, inclusive")
    g.add_argument("--utterance", dest="ids", nargs="+", metavar="ID", help="utterance ids")
    g.add_argument("--contains", metavar="TEXT", help="every utterance that mentions TEXT (case-insensitive)")
    p.add_argument("--mode", default="auto", metavar="METHOD",
                   help="a registered forgetting method: auto (default: exact when cheap, else fast now and exact "
                        "at the next maintain), fast, exact, retrain, subtraction, finetune, or one of your own "
                        "(ASSISTANT_FORGET_METHODS=your_module; `assistant-forget methods` lists them)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--verify", action="store_true",
                   help="measure the forget against the oracle while its utterances are in memory; with auto, a "
                        "fast forget that fails a check beyond its noise runs the exact pass at once (the receipt "
                        "records both)")
    p.add_argument("--unseen", type=Path, metavar="FILE", help="with --verify: JSONL of held-out utterances "
                                                                "(text, intent) the device never logged")
    p.add_argument("--canary", metavar="TEXT", help="with --verify: a planted secret whose exposure to measure")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("forget", "forget a day, a range, utterances or a phrase: model, ledger, logs and exports", _configure_forget)
def cmd_forget(args: argparse.Namespace) -> int:
    from .api import forget

    tick, bar = progress_bar("exact replay")
    with bar:
        res = forget(args.device, date=args.date, start=args.start, end=args.end, ids=args.ids,
                     contains=args.contains, mode=args.mode, dry_run=args.dry_run, verify=args.verify,
                     unseen=args.unseen, canary=args.canary, progress=tick)
    if args.json:
        _print_json(res)
    elif res.get("dry_run"):
        print(f"would forget {res['utterances']} utterance(s) on {len(res['days'])} day(s) with the "
              f"{res['mode']} tier ({len(res['trained_days'])} trained day(s), "
              + (f"{len(res['readers'])} later day(s) whose replay read them, {res['repair_steps']} repair steps, "
                 if res.get("repair_steps") else "")
              + f"{res['exact_replay_days']} day(s) to replay exactly); nothing changed")
        for day, n in res["days"].items():
            print(f"  {day}  {n:4d}")
        matched = res.get("matched")
        if matched:
            print(f"matched ({len(matched)}):")
            for m in matched:
                print(f"  {m.get('day', '')}  {m.get('id', '')}  {_printable(str(m.get('text', '')))}")
    else:
        print(f"forgot {res['utterances']} utterance(s) on {len(res['days'])} day(s) [{res['tier']}]; "
              f"model {res['version_before']} -> {res['version_after']} ({res['state']}); "
              f"receipt {res['id']}")
        if res.get("verification"):
            v = res["verification"]
            print(f"verified: {'PASS' if v['passed'] else 'FAIL'} ("
                  + ", ".join(f"{n} {'pass' if r['passed'] else 'FAIL'}" for n, r in v["verdict"].items()) + ")")
        esc = res.get("escalation")
        if esc:
            print(f"escalation: failed {', '.join(esc['failed'])}; {esc['action']}"
                  + (f" (receipt {esc['receipt']}, now {esc['state']})" if esc.get("receipt") else ""))
    return 0


def _configure_methods(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON list")


@command("methods", "list the registered forgetting methods (--mode) and whether each can commit to a device",
         _configure_methods)
def cmd_methods(args: argparse.Namespace) -> int:
    from .core import method as methods

    rows = [{"name": n, "kind": (m := methods.get(n)).kind, "exact": m.exact, "commits": m.commits,
             "why_not": m.why_not or None,
             "config": m.settings(), "summary": (type(m).__doc__ or "").strip().splitlines()[0]}
            for n in methods.names()]
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['name']:12s} {r['kind']:13s} {r['summary']}" + (f" ({r['why_not']})" if r["why_not"] else ""))
    return 0


def _configure_history(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--json", action="store_true", help="print the receipts as a JSON list")


@command("history", "list the forget receipts of a device", _configure_history)
def cmd_history(args: argparse.Namespace) -> int:
    from .api import history

    rows = history(args.device)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no receipts")
    for r in rows:
        sel = r.get("selector", {})
        what = {"date": lambda: sel["from"], "range": lambda: f"{sel['from']}..{sel['to']}",
                "utterance": lambda: f"{sel['count']} id(s)", "contains": lambda: "a phrase"}
        desc = what.get(sel.get("kind"), lambda: "")()
        print(f"{r['time_utc']}  {r['type']:10s} {r['tier']:6s} {desc:24s} "
              f"{r.get('version_before', '')} -> {r.get('version_after', '')}  {r['id'][:8]}")
    return 0


def _configure_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="JSONL file: one utterance per line (text, intent, timestamp, tz)")
    _device_arg(p)
    p.add_argument("--seed", type=int, default=None, help="device seed if the device is created (default 0)")


@command("import", "import utterances from a JSONL file into a device: every line valid, or nothing imported",
         _configure_import)
def cmd_import(args: argparse.Namespace) -> int:
    from .device.importer import import_jsonl

    res = import_jsonl(args.device, args.file, seed=args.seed)
    created = " (new device)" if res.created else ""
    print(f"imported {res.utterances} utterances over {res.days} local days into {res.device}{created}")
    return 0


def _configure_verify(p: argparse.ArgumentParser) -> None:
    _device_arg(p)
    p.add_argument("--date", metavar="DATE", help="a local day, YYYY-MM-DD: audit its forget receipt, or, if it is "
                                                  "not forgotten yet, a what-if fast forget on a working copy inside DIR/.work "
                                                  "(default: audit the latest forget)")
    p.add_argument("--weights", default="onnx", help="onnx (the exported model the app runs, default) | onnx-int8 "
                                                    "(its int8 model) | fp16 (CoreML's half-precision weights, "
                                                    "emulated) | torch")
    p.add_argument("--attacks", metavar="LIST", help="comma-separated: loss-mia, lira, exposure, u-lira, "
                                                     "challenge-eps, model-diff, relearn, or all (default: loss-mia, "
                                                     "exposure with --canary, lira with --lira); each runs where its "
                                                     "inputs exist and is listed as skipped otherwise")
    p.add_argument("--models", type=int, default=8, metavar="K", help="u-lira / challenge-eps: models per side, >= 3 "
                                                                        "(default 8; the NeurIPS'23 challenge used 512)")
    p.add_argument("--horizon", type=int, default=2, metavar="H", help="u-lira / challenge-eps: later days each "
                                                                         "model trains (default 2)")
    p.add_argument("--workers", type=int, metavar="N", help="processes that train the models (default: every CPU)")
    p.add_argument("--unseen", type=Path, metavar="FILE", help="JSONL of held-out utterances (text, intent) the "
                                                                "device never logged, for the attacks")
    p.add_argument("--canary", metavar="TEXT", help="a planted secret (e.g. 'remind me my locker code is 3 7 1 9 5') "
                                                    "whose exposure to measure among the other secrets of its format: "
                                                    "its digits, and the letters of words holding a digit, are the "
                                                    "slots (here 10^5 secrets)")
    p.add_argument("--canary-format", metavar="FMT", help="the canary's format instead, {d} a digit, {l} a letter "
                                                          "(e.g. 'my door code is {l} {d} {d} {d}'); at least 1,000 "
                                                          "secrets")
    p.add_argument("--lira", type=int, default=0, metavar="K", help="LiRA with K shadow models per side "
                                                                      "(what-if only; 0: skip, default)")
    p.add_argument("--report", type=Path, metavar="DIR", help="report directory (default: DIR-verify beside "
                                                               "the device, never inside it)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


@command("verify", "measure a forget against the oracle (membership attacks, accuracy, KL, exposure) and write "
         "a report; exit 1 if a check fails", _configure_verify)
def cmd_verify(args: argparse.Namespace) -> int:
    from .api import verify
    from .verify.report import format_verdict

    tick, bar = progress_bar("oracle replay")
    with bar:
        res = verify(args.device, args.date, weights=args.weights, unseen=args.unseen, canary=args.canary,
                     canary_format=args.canary_format, lira=args.lira, attacks=args.attacks, models=args.models,
                     horizon=args.horizon, workers=args.workers, report=args.report, progress=tick)
    if args.json:
        _print_json(res)
    elif res.get("family") == "hf-causal-lm":
        from .verify.lm import format_lm_verdict

        print(format_lm_verdict(res))
        print(f"report: {res['report']}")
    else:
        print(format_verdict(res))
        print(f"report: {res['report']}")
    return 0 if res["passed"] else 1


# -- entry point ----------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: 'error: MESSAGE (see PROG --help)', exit code 2."""

    def error(self, message: str) -> NoReturn:
        _say(f"error: {message} (see `{self.prog} --help`)")
        raise SystemExit(2)


PLUGINS = "assistant_forget.commands"  # entry-point group of commands other packages add (device_sim's `simulate`)


def plugin_commands() -> list[Command]:
    """Commands installed packages register under the PLUGINS entry-point group, each a `Command` tuple."""
    from importlib.metadata import entry_points

    return sorted((ep.load() for ep in entry_points(group=PLUGINS)), key=lambda c: c[0])


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser, every command configured; with `chosen`, only that command's options (the others are listed
    by name and help, and their option modules, e.g. the simulator's, are not imported)."""
    parser = _Parser(
        prog="assistant-forget",
        description="Let an on-device assistant forget a day, a range, an utterance or a person, and prove it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help, configure, fn in COMMANDS + plugin_commands():
        p = sub.add_parser(name, help=help, description=help)
        if chosen is None or name == chosen:
            configure(p)
        p.set_defaults(func=fn)
    return parser


INTERNAL_ERROR = 70  # exit code of an unexpected exception (EX_SOFTWARE): a bug, reported in one line
BROKEN_PIPE = 141  # exit code when stdout/stderr is closed early: 128 + SIGPIPE, what a shell shows for `yes | head`
DEBUG_ENV = "ASSISTANT_FORGET_DEBUG"  # set to 1 to get the traceback of an internal error


def _one_line(message: str) -> str:
    """A message on one line: its lines joined with '; ' (a last resort: messages are written as one line)."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def _say(line: str) -> None:
    """Write one line to stderr; a closed stderr is ignored (there is nobody left to tell)."""
    try:
        print(_one_line(line), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


STDIO_ERRORS = "assistant-forget-escape"  # codec error handler of stdout/stderr (see _escape)


def _escape(e: UnicodeError) -> tuple[bytes, int]:
    r"""Encoding error handler: a byte that came in undecodable (a surrogate escape, e.g. in a path given under a
    C locale) goes out as that byte again; anything else that cannot be encoded (a lone surrogate) as \uXXXX.

    >>> "d\udcc3\udca9v \ud83d".encode("utf-8", STDIO_ERRORS)
    b'd\xc3\xa9v \\ud83d'
    """
    if not isinstance(e, UnicodeEncodeError):
        raise e
    chunk = e.object[e.start:e.end]
    return b"".join(bytes([ord(c) - 0xDC00]) if 0xDC80 <= ord(c) <= 0xDCFF else
                    c.encode("ascii", "backslashreplace") for c in chunk), e.end


codecs.register_error(STDIO_ERRORS, _escape)


def _utf8_stdio() -> None:
    """Make stdout and stderr write UTF-8 whatever the locale (LC_ALL=C included), never failing on a character."""
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper):
            continue
        try:
            if (stream.encoding or "").lower().replace("-", "").replace("_", "") != "utf8":
                stream.reconfigure(encoding="utf-8", errors=STDIO_ERRORS)
            elif stream.errors == "strict":
                stream.reconfigure(errors=STDIO_ERRORS)
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            pass


def _quiet_broken_pipe() -> int:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush cannot complain; exit 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
    return BROKEN_PIPE


def _os_error_message(e: OSError, args: argparse.Namespace) -> str:
    """One line for a refusal of the file system: the file (else the command and device directory) and why."""
    reason = e.strerror or str(e) or type(e).__name__
    device = getattr(args, "device", None)
    files = [str(f) for f in (e.filename, getattr(e, "filename2", None)) if f not in (None, "")]
    where = " -> ".join(files) if files else (f"{args.command} in {device}" if device else str(args.command))
    if e.errno == errno.ENOSPC or e.errno == getattr(errno, "EDQUOT", None):
        hint = f"free space on the file system holding {device or where} and run the command again"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make the device directory and its files writable (or use a read-only command) and run again"
    else:
        hint = "check the device directory's files, permissions and free space"
    return f"error: {where}: {reason}; {hint} (an interrupted forget is finished by the next write command)"


def main(argv: list[str] | None = None) -> int:
    _utf8_stdio()
    given = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in given if not a.startswith("-")), ""))
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at interpreter exit
        return code
    except BrokenPipeError:  # `status | head -1`: the reader left; say nothing, like a Unix tool
        return _quiet_broken_pipe()
    except ForgetError as e:
        _say(f"error: {e}" if str(e) else f"error: {type(e).__name__}")
        return e.exit_code
    except OSError as e:  # the file system refused: permissions, a file where a directory belongs, a full disk
        _say(_os_error_message(e, args))
        return ForgetError.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - the last resort: a bug must not show a user a traceback
        if os.environ.get(DEBUG_ENV):
            import traceback

            traceback.print_exc()
        first = (str(e).splitlines() or [""])[0][:200]
        _say(f"error: internal error ({type(e).__name__}{': ' + first if first else ''}); this is a bug in "
             f"assistant-forget: please report it with the command you ran (set {DEBUG_ENV}=1 to see the traceback)")
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())

"""Forgetting methods: the protocol every method follows, and the registry that names them.

A forget runs in two halves. The runner (runner/forget.py) owns what every method shares: it matches the
selector, writes the journal, deletes the rows, records tombstones, re-exports, appends the receipt and
recovers after a crash. A *method* owns only the model: what it will touch (`plan`) and how it changes the
personal state once the rows are gone (`apply`). Methods are registered by name, as opacus registers its
accountants: `--mode NAME` and the journal resolve a name through `get`, so recovery after a crash finishes
a forget with the method that started it, with the same configuration.

A method that `commits` leaves the device in a state the runner can publish: exact (the model equals a
device that never saw the data, byte for byte) or approximate (an exact pass pending, run by `maintain`).
A measured-only method (`commits = False`) changes a model in memory for benchmarks; `--mode` refuses it
and says why.

In memory (benchmarks, tools/bench_baselines.py) every method runs the same way: `prepared =
method.prepare(subject)` while the data is still there (the work a method does before a forget: SISA trains
its shard ensemble; most do nothing and return None), then the rows go, then `method.apply(subject, request,
plan, forgotten=rows, prepared=prepared)`. A measured-only method returns the model it made; a committing one
returns its repair steps (its model is the subject's).

Adding a method is one file and one `@register` line (docs/toolkit.md has a worked example):

    @register
    class Subtraction(Method):
        name, exact = "subtraction", False
        def apply(self, subject, request, plan, progress=None, forgotten=None, prepared=None):
            subject.timeline.fast_forget(request.trained, repair=None)
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Sequence

from .errors import BadInput

NAME_RE = re.compile(r"^[a-z][a-z0-9_+-]{0,31}$")


@dataclass(frozen=True)
class Request:
    """What a forget removes, computed by the runner before any method looks at it. Ids and keys only, no text."""

    ids: tuple[str, ...]  # matched item ids
    days: dict[str, int]  # affected key (a local day) -> items removed
    trained: list[str]  # affected keys the model has trained on
    readers: list[str]  # trained keys whose update read an affected key (a replay sample)
    replay_days: int  # keys an exact pass would retrain (from the checkpoint before the first trained key)
    subtracted: int  # items (before the forget) of `trained` + `readers`: the training a subtraction removes
    retained: int  # items left after the forget
    until: str | None  # the last key the model had trained before the forget (None: nothing trained)
    history: int = 0  # trained keys that keep data (what a retrain from the initial state replays)


@dataclass(frozen=True)
class Plan:
    """What a method will do, fixed before anything changes and recorded in the journal."""

    method: str  # registered name of the method that runs (auto: the one it picked)
    exact: bool  # True: the result equals a device that never saw the data
    config: dict  # the method's configuration (dataclasses.asdict of its Config)
    subtract: list[str] = field(default_factory=list)  # keys whose stored deltas are removed (+ readers')
    replay_days: int = 0  # keys retrained now
    repair_steps: int = 0  # repair budget after a subtraction


class Subject(Protocol):
    """What a method acts on: one device's model (runner/engine.py's Engine)."""

    timeline: Any  # core.timeline.Timeline over the device's ledger
    family: Any  # core.family.ModelFamily
    seed: int  # device seed

    def sync(self, until: str | None = None, progress=None) -> Any: ...


class ForgetMethod(Protocol):
    """A forgetting method. `plan` says what it will touch (changes nothing); `prepare` is the work it does
    before a forget, while the data is still there (in memory, for benchmarks: SISA trains its shard ensemble;
    the runner never calls it); `apply` changes the model once the rows are gone: `forgotten` holds the
    deleted rows when an in-memory caller kept them, `prepared` what `prepare` returned. A committing method
    leaves the timeline committed and returns the repair steps it took (or None; its model is
    `subject.timeline.model`); a measured-only one returns the model it made."""

    name: ClassVar[str]
    exact: ClassVar[bool]
    commits: ClassVar[bool]
    Config: ClassVar[type]
    config: Any

    def plan(self, request: Request, family: Any) -> Plan: ...

    def prepare(self, subject: Subject, progress=None) -> Any: ...

    def apply(self, subject: Subject, request: Request, plan: Plan, progress=None,
              forgotten: Sequence | None = None, prepared: Any = None) -> Any: ...


@dataclass(frozen=True)
class NoConfig:
    """A method without settings."""


class Method:
    """Base class of the registered methods: holds a validated config; `plan` defaults to touching nothing."""

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = False
    commits: ClassVar[bool] = True
    why_not: ClassVar[str] = ""  # for a measured-only method: why it cannot commit to a device
    Config: ClassVar[type] = NoConfig

    def __init__(self, config: Any = None, **settings: Any) -> None:
        if config is not None and settings:
            raise BadInput(f"{self.name}: give a config or settings, not both")
        if isinstance(config, dict):
            config, settings = None, config
        if config is None:
            known = {f.name for f in dataclasses.fields(self.Config)}
            unknown = sorted(set(settings) - known)
            if unknown:
                raise BadInput(f"{self.name}: unknown setting(s) {', '.join(unknown)}; it takes "
                               f"{', '.join(sorted(known)) or 'none'}")
            config = self.Config(**settings)
        if not isinstance(config, self.Config):
            raise BadInput(f"{self.name} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    @property
    def kind(self) -> str:
        """How its result stands, for listings: exact, approximate, or measured only."""
        return ("exact" if self.exact else "approximate") if self.commits else "measured only"

    def settings(self) -> dict:
        return dataclasses.asdict(self.config)

    def plan(self, request: Request, family: Any) -> Plan:
        return Plan(self.name, self.exact, self.settings())

    def prepare(self, subject: Subject, progress=None) -> Any:
        """The work done before a forget, while the data is still there; handed to `apply` as `prepared`.
        Default: none (None)."""
        return None

    def apply(self, subject: Subject, request: Request, plan: Plan, progress=None,
              forgotten: Sequence | None = None, prepared: Any = None) -> Any:
        """Change `subject`'s model for `request` (its rows are gone), as `plan` says. A committing method
        leaves the timeline committed and returns the repair steps it took (or None); a measured-only one
        returns the model it made. `prepared`: what `prepare` returned before the rows went."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


_REGISTRY: dict[str, type[Method]] = {}
ENV_PLUGINS = "ASSISTANT_FORGET_METHODS"  # comma-separated modules or .py files that register methods
ENTRY_POINTS = "assistant_forget.methods"  # entry-point group of installed packages that register methods
BUILTIN = "assistant_forget.methods"  # the package of the shipped methods, one module each
SHIPPED = {"fast": "fast", "exact": "exact", "auto": "auto", "retrain": "retrain", "subtraction": "subtraction",
           "finetune": "finetune", "sisa": "sisa", "neggrad+": "neggrad"}  # name -> module in BUILTIN
_loaded: set[str] = set()


def load_plugins() -> None:
    """Import the modules that register methods: the shipped ones (SHIPPED in BUILTIN, a layer above this one,
    so loaded by name rather than imported), installed packages' entry points in ENTRY_POINTS, and every module
    or .py file ENV_PLUGINS names. Each is imported once; a missing or failing one is BadInput naming it (a
    forget must not start, or be recovered, with the wrong method)."""
    import importlib
    import importlib.util
    import os
    from importlib.metadata import entry_points
    from pathlib import Path

    specs = [f"{BUILTIN}.{m}" for m in SHIPPED.values()] + [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINTS)]
    specs += [x.strip() for x in os.environ.get(ENV_PLUGINS, "").split(",") if x.strip()]
    for spec in specs:
        if spec in _loaded:
            continue
        try:
            if spec.endswith(".py"):
                path = Path(spec).resolve()
                mod_spec = importlib.util.spec_from_file_location(f"assistant_forget_plugin_{path.stem}", path)
                if mod_spec is None or not path.is_file():
                    raise FileNotFoundError(f"no such file {path}")
                module = importlib.util.module_from_spec(mod_spec)
                mod_spec.loader.exec_module(module)
            else:
                importlib.import_module(spec)
        except Exception as e:  # noqa: BLE001 - any failure of a user's module is reported the same way
            raise BadInput(f"{ENV_PLUGINS} / {ENTRY_POINTS}: cannot load {spec!r} ({type(e).__name__}: {e})") from None
        _loaded.add(spec)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make `cls` available as `--mode cls.name`. Names are unique and lower-case."""
    if not isinstance(cls.name, str) or not NAME_RE.match(cls.name):
        raise ValueError(f"method name {cls.name!r}: lower-case letters, digits, _ + -, at most 32")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is registered already ({_REGISTRY[cls.name].__module__})")
    if not (dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen):
        raise ValueError(f"{cls.name}: Config must be a frozen dataclass")
    if not cls.commits and not cls.why_not:
        raise ValueError(f"{cls.name}: a measured-only method says why it cannot commit (why_not)")
    _REGISTRY[cls.name] = cls
    return cls


def names(commits: bool | None = None) -> list[str]:
    """Registered method names, sorted; only those that can (or cannot) commit to a device when given."""
    load_plugins()
    return sorted(n for n, c in _REGISTRY.items() if commits is None or c.commits == commits)


def get(name: str, config: Any = None) -> Method:
    """The registered method `name` with `config` (a Config, a dict of settings, or None for the defaults)."""
    cls = _REGISTRY.get(name)
    if cls is None and name in SHIPPED:  # only its own module: planning a forget stays light
        import importlib

        importlib.import_module(f"{BUILTIN}.{SHIPPED[name]}")
        cls = _REGISTRY.get(name)
    if cls is None:
        load_plugins()
        cls = _REGISTRY.get(name)
    if cls is None:
        raise BadInput(f"no forgetting method {name!r}; registered: {', '.join(names())} (a method of your own "
                       f"is found through {ENV_PLUGINS}=your_module or the {ENTRY_POINTS!r} entry point)")
    return cls(config)


def committing(name: str, config: Any = None) -> Method:
    """`get`, refusing a measured-only method with the reason it cannot commit to a device."""
    method = get(name, config)
    if not method.commits:
        raise BadInput(f"method {name!r} is measured only, it cannot commit to a device: {method.why_not}; "
                       f"use one of {', '.join(names(commits=True))}")
    return method


def check_count(name: str, value: Any, least: int, optional: bool = False) -> None:
    """BadInput unless `value` is an int >= `least` (or None when `optional`)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise BadInput(f"{name} must be an integer >= {least}{' (or None)' if optional else ''}, got {value!r}")


def check_positive(name: str, value: Any, optional: bool = False) -> None:
    """BadInput unless `value` is a finite number > 0 (or None when `optional`)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BadInput(f"{name} must be a positive number{' (or None)' if optional else ''}, got {value!r}")

"""The method registry: names, configs validated on creation, measured-only methods refused, plugins loaded."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from assistant_forget.core import method as methods
from assistant_forget.core.errors import BadInput
from assistant_forget.core.method import Method, Plan, register

SHIPPED = {"auto", "exact", "fast", "finetune", "neggrad+", "retrain", "sisa", "subtraction"}


def test_every_shipped_method_is_registered_and_says_what_it_is():
    assert SHIPPED <= set(methods.names())
    assert set(methods.names(commits=False)) >= {"sisa", "neggrad+"}
    for name in SHIPPED:
        m = methods.get(name)
        assert m.name == name and isinstance(m.settings(), dict) and (m.commits or m.why_not)
    assert methods.get("exact").exact and methods.get("retrain").exact and not methods.get("fast").exact


def test_configs_are_validated_when_a_method_is_made():
    assert methods.get("fast", {"steps": 3}).settings() == {"steps": 3}
    for name, bad in [("fast", {"steps": -1}), ("fast", {"steps": 1.5}), ("finetune", {"lr": 0}),
                      ("neggrad+", {"alpha": 2}), ("sisa", {"shards": 0}), ("auto", {"exact_max_days": True}),
                      ("fast", {"stepz": 3})]:
        with pytest.raises(BadInput):
            methods.get(name, bad)


def test_unknown_and_measured_only_names_are_refused_with_the_choices():
    with pytest.raises(BadInput, match="registered: auto, exact"):
        methods.get("fastest")
    with pytest.raises(BadInput, match="measured only.*ensemble"):
        methods.committing("sisa")


def test_registration_checks_name_config_and_uniqueness():
    @dataclass
    class Loose:
        x: int = 1

    with pytest.raises(ValueError, match="lower-case"):
        register(type("Bad", (Method,), {"name": "Bad Name"}))
    with pytest.raises(ValueError, match="frozen"):
        register(type("Loose", (Method,), {"name": "loose-test", "Config": Loose}))
    with pytest.raises(ValueError, match="registered already"):
        register(type("Fast2", (Method,), {"name": "fast"}))
    with pytest.raises(ValueError, match="says why"):
        register(type("Quiet", (Method,), {"name": "quiet-test", "commits": False}))


def test_a_registered_method_is_found_and_plans(tmp_path):
    @register
    class Noop(Method):
        name, exact = "noop-test", False

        def plan(self, request, family):
            return Plan(self.name, False, self.settings(), subtract=list(request.trained))

    try:
        assert "noop-test" in methods.names(commits=True)
        assert isinstance(methods.get("noop-test"), Noop)
    finally:
        methods._REGISTRY.pop("noop-test")


def test_plugins_load_from_the_environment_and_a_broken_one_is_a_clear_error(tmp_path):
    (tmp_path / "mine.py").write_text("from assistant_forget import Method, register\n"
                                      "@register\nclass Mine(Method):\n    name = 'mine-test'\n")
    code = "from assistant_forget.core import method as m; print(' '.join(m.names()))"
    env = {"ASSISTANT_FORGET_METHODS": str(tmp_path / "mine.py"), "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "mine-test" in out.stdout.split() and "fast" in out.stdout.split()
    env["ASSISTANT_FORGET_METHODS"] = str(tmp_path / "missing.py")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "cannot load" in out.stderr and "missing.py" in out.stderr

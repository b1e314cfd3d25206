"""assistant-forget: forget a day, a range, an utterance or everything about a person — from the on-device
assistant or from your own model — and prove it.

The names below are the public API (docs/toolkit.md is the tutorial). They load on first use, so
`import assistant_forget` stays cheap for commands that never touch a model.

    import assistant_forget as af
    af.forget("devices/demo", date="2026-03-03", mode="exact")       # the assistant's device
    with af.open_device("my-device", af.ModuleFamily(net, loss)) as dev:   # your own nn.Module
        dev.add(data); dev.train(); dev.forget(keys=["bob"], mode="fast")
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    # the device commands, one function each (api.py)
    "train": "api", "forget": "api", "maintain": "api", "export": "api", "history": "api", "status": "api",
    "verify": "api", "retain": "api",
    # your own model: a family and a device for it
    "open_device": "api", "ModelDevice": "api",
    "ModuleFamily": "families.module", "ModuleConfig": "families.module",
    "AssistantFamily": "families.assistant.family", "ModelFamily": "core.family", "check_key": "core.keys",
    "HFCausalLMFamily": "families.hf_lm.family", "LoraSettings": "families.hf_lm.config",
    "LMTrainConfig": "families.hf_lm.config",
    # forgetting methods: the protocol and the registry
    "Method": "core.method", "ForgetMethod": "core.method", "Plan": "core.method", "Request": "core.method",
    "register": "core.method", "get_method": ("core.method", "get"), "method_names": ("core.method", "names"),
    # errors (each with its CLI exit code)
    "ForgetError": "core.errors", "BadInput": "core.errors", "CorruptFile": "core.errors",
    "NothingToForget": "core.errors", "DeviceBusy": "core.errors", "DeviceNotFound": "core.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    where = _PUBLIC.get(name)
    if where is None:
        raise AttributeError(f"module 'assistant_forget' has no attribute {name!r}")
    module, attr = where if isinstance(where, tuple) else (where, name)
    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

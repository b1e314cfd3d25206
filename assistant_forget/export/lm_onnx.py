"""A causal LM with LoRA adapters for ONNX Runtime: the base graph once, each publication only the adapter.

The base graph (`export_base`) is the LM traced by torch.onnx's TorchScript exporter (`dynamo=False`) with every
LoRA A/B matrix lifted to a graph input named like the adapter's tensor in PEFT's safetensors
(`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`); each input also has an initializer of the
same name holding the untrained adapter (A from its seed, B zero), so the graph run without an adapter is the
base model. Input `input_ids` (batch, sequence; no padding: every position attends to the ones before it),
output `logits` (batch, sequence, vocabulary). The graph depends only on the base and the LoRA shapes, never on
personal data, so it is written once and kept; a forget rewrites only the adapter.

The adapter (`adapter_bytes`) is ONNX Runtime's LoRA adapter format (`onnxruntime.AdapterFormat`,
`.onnx_adapter`): the A/B matrices, float32, under the same names; the app loads it with
`onnxruntime.LoraAdapter` and activates it per run (`RunOptions.add_active_adapter`, lm_runtime.py).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

GRAPH_INPUT = "input_ids"
GRAPH_OUTPUT = "logits"
OPSET = 17
ADAPTER_VERSION = 1  # of the tensors' layout: one matrix per PEFT name, float32


def adapter_name(param: str) -> str:
    """PEFT's saved name of an adapter parameter: the adapter's own name ("default") left out.

    >>> adapter_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight")
    'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'
    """
    return param.replace(".default.", ".")


class _Lifted:
    """The model with its adapter parameters replaced by tensors given to forward (what the trace lifts)."""

    def __init__(self, model, params: list[str]) -> None:
        import torch

        self.model = model
        self.owners = [model.get_submodule(p.rsplit(".", 1)[0]) for p in params]
        self.leaf = [p.rsplit(".", 1)[1] for p in params]
        for owner, leaf in zip(self.owners, self.leaf):
            delattr(owner, leaf)

        class Graph(torch.nn.Module):
            def __init__(inner) -> None:
                super().__init__()
                inner.model = model

            def forward(inner, input_ids, *adapter):
                for owner, leaf, t in zip(self.owners, self.leaf, adapter):
                    setattr(owner, leaf, t)
                return inner.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                   use_cache=False).logits

        self.graph = Graph().eval()


def export_base(model, params: list[str], initial: Mapping[str, np.ndarray], path: Path,
                example_ids: list[int]) -> None:
    """Write the base graph of `model` (a PEFT model, consumed: its adapter parameters are lifted off it) to
    `path`, atomically: `params` are the adapter parameter names, `initial` the untrained adapter by PEFT name
    (the graph inputs' defaults), `example_ids` a token sequence to trace with."""
    import onnx
    import torch
    from onnx import numpy_helper

    names = [adapter_name(p) for p in params]
    values = [torch.from_numpy(np.ascontiguousarray(initial[n], dtype=np.float32)) for n in names]
    lifted = _Lifted(model, params)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent branches: the mask is all ones
            torch.onnx.export(lifted.graph, (torch.tensor([example_ids]), *values), tmp, dynamo=False,
                              input_names=[GRAPH_INPUT, *names], output_names=[GRAPH_OUTPUT], opset_version=OPSET,
                              dynamic_axes={GRAPH_INPUT: {0: "batch", 1: "sequence"},
                                            GRAPH_OUTPUT: {0: "batch", 1: "sequence"}})
        graph = onnx.load(tmp)
        graph.graph.initializer.extend(numpy_helper.from_array(v.numpy(), n) for n, v in zip(names, values))
        onnx.save(graph, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the graph is public, as the base
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def adapter_bytes(tensors: Mapping[str, np.ndarray], model_version: int = 1) -> bytes:
    """The `.onnx_adapter` file of `tensors` (PEFT name -> matrix), float32, names in sorted order (the same
    tensors always give the same bytes)."""
    import onnxruntime as ort

    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(ADAPTER_VERSION)
    fmt.set_model_version(model_version)
    fmt.set_parameters({n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(tensors[n], dtype=np.float32))
                        for n in sorted(tensors)})
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "adapter.onnx_adapter"
        fmt.export_adapter(str(out))
        return out.read_bytes()

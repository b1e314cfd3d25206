"""What the app runs to use an exported causal LM: ONNX Runtime, `tokenizers` and numpy, never torch.

`LMRuntime.from_device(DIR)` opens a device's live hf-causal-lm export: its export.json names the base graph
(kept under DIR/cache/, written once, lm_onnx.py) and the tokenizer, and lists the personal adapter
(`adapter.onnx_adapter`, rewritten by every publication). Every file is checked against its SHA-256 before it
is used. The adapter is loaded with `onnxruntime.LoraAdapter` and activated on every run
(`RunOptions.add_active_adapter`). A text is encoded as the family trains it: `<s> text </s>`, cut to
`max_len` tokens (families/hf_lm/text.py).

- `logits(ids)`: next-token logits (T, vocabulary) of a token sequence;
- `score(text)`: the mean next-token negative log-likelihood of `<s> text </s>` in nats per token (what the
  family's `example_losses` computes: lower is more familiar);
- `generate(prompt)`: a greedy completion, stopping at `</s>` or after `max_new_tokens`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.errors import CorruptFile
from ..core.fsio import sha256_file
from .lm_onnx import GRAPH_INPUT, GRAPH_OUTPUT
from .publish import current_export, verify_export

ADAPTER = "adapter.onnx_adapter"


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


class LMRuntime:
    """A base graph with one active LoRA adapter, and the tokenizer (see the module docstring)."""

    def __init__(self, graph: Path, tokenizer: Path, adapter: Path | None, bos_id: int, eos_id: int,
                 max_len: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the adapter inputs' initializers are overridable on purpose: no warning
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.run_options = ort.RunOptions()
        if adapter is not None:
            self.adapter = ort.LoraAdapter()
            self.adapter.Load(str(adapter))
            self.run_options.add_active_adapter(self.adapter)
        self.bos_id, self.eos_id, self.max_len = bos_id, eos_id, max_len

    @classmethod
    def from_device(cls, device_dir: Path | str) -> "LMRuntime":
        """The live export of the hf-causal-lm device `device_dir`, every file checked (CorruptFile otherwise)."""
        root = Path(device_dir)
        live = current_export(root)
        if live is None:
            raise CorruptFile(f"{root}: no live export; run `assistant-forget export --device {root}`")
        manifest = verify_export(live)
        lm = manifest.get("lm")
        if not isinstance(lm, dict) or ADAPTER not in manifest["files"]:
            raise CorruptFile(f"{live / 'export.json'}: not an hf-causal-lm ONNX export")
        for key in ("graph", "tokenizer"):
            path = root / lm[key]
            if not path.is_file() or sha256_file(path) != lm[key + "_sha256"]:
                raise CorruptFile(f"{path}: missing or checksum mismatch; run `assistant-forget export` again")
        return cls(root / lm["graph"], root / lm["tokenizer"], live / ADAPTER, lm["bos_id"], lm["eos_id"],
                   lm["max_len"])

    def encode(self, text: str) -> list[int]:
        """`<s> text </s>` as token ids, cut to max_len."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return [self.bos_id] + ids[:self.max_len - 2] + [self.eos_id]

    def logits(self, ids: list[int]) -> np.ndarray:
        """Next-token logits (len(ids), vocabulary), float32."""
        feed = {GRAPH_INPUT: np.asarray([ids], dtype=np.int64)}
        return self.session.run([GRAPH_OUTPUT], feed, self.run_options)[0][0]

    def score(self, text: str) -> float:
        """Mean next-token NLL of `<s> text </s>`, nats per token."""
        ids = self.encode(text)
        logp = _log_softmax(self.logits(ids)[:-1])
        return float(-logp[np.arange(len(ids) - 1), ids[1:]].mean())

    def generate(self, prompt: str, max_new_tokens: int = 16) -> str:
        """The greedy completion of `prompt` (the text after it), up to `</s>` or `max_new_tokens` tokens."""
        ids = [self.bos_id] + self.tokenizer.encode(prompt, add_special_tokens=False).ids
        new: list[int] = []
        for _ in range(max_new_tokens):
            nxt = int(np.argmax(self.logits(ids + new)[-1]))
            if nxt == self.eos_id:
                break
            new.append(nxt)
        return self.tokenizer.decode(new)


def describe(device_dir: Path | str) -> dict:
    """The `lm` entry of a device's live export manifest (what `from_device` reads), for tools."""
    live = current_export(Path(device_dir))
    return json.loads((live / "export.json").read_text(encoding="utf-8")).get("lm", {}) if live else {}

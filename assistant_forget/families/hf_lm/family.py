"""The `hf-causal-lm` family: any local Hugging Face causal LM, personalised day by day through LoRA adapters.

The base (a local `AutoModelForCausalLM` directory, checkpoint.py) never changes; the personal parameters are
the A/B matrices of `peft` LoRA adapters on the modules `LoraSettings.target_modules` names, A initialised from
a fixed seed and B at zero, so the untrained model is the base. A key is a local day of the device's
utterance log (device/store.py), the same log the assistant reads, so `import`, `forget --date`, `--contains`
and the tombstones work unchanged.

A day trains the causal-LM loss (text.py) on its utterances in the log's canonical order, mixed with
`replay_public` CLINC150 train utterances, for `epochs` passes: a fresh AdamW (core/fitting.py), every random
choice from the day's seed (device seed + date), one torch thread (the session pins it). No earlier personal
day is replayed, so a day's delta reads no other day and the fast tier subtracts exactly the forgotten days.
The fast tier's repair is a short fine-tune on a sample of the retained days, stopping once the retained loss
is back (as the assistant's). The ledger, checkpoints, journal and receipts are the toolkit's: the timeline
stores each day's adapter delta (core/timeline.py). `publish` writes the adapter only (publish.py).
"""

from __future__ import annotations

import copy
import hashlib
import random
import shutil
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ...core.errors import BadInput
from ...core.fitting import fit, minibatches, sample
from ...core.fsio import atomic_write_bytes
from ...core.tensorfile import tensors_to_bytes
from ...device.clinc import load_clinc
from .checkpoint import LocalLM, digest, load_local
from .config import LMTrainConfig, LoraSettings, model_id
from .publish import ADAPTER_CONFIG, ADAPTER_FILE, ONNX_ADAPTER, check_formats, publish_adapter
from .text import lm_loss, text_losses

ATTENTION = ("sdpa", "eager")  # attention kernels the family accepts (part of the model id: they round apart)


def shipped_model_dir() -> Path:
    """models/lm-tiny in this repository: the tiny public LM that tools/build_lm.py builds."""
    return Path(__file__).resolve().parents[3] / "models" / "lm-tiny"


def _adaptable(model: nn.Module) -> dict[str, nn.Module]:
    """The base's modules a LoRA adapter can wrap (linear layers, GPT-2's Conv1D), by dotted name."""
    from transformers.pytorch_utils import Conv1D

    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D)) and n}


def _matches(name: str, target: str) -> bool:
    """peft's rule for a target given as a name: the module's dotted name is it or ends with '.' + it."""
    return name == target or name.endswith("." + target)


def with_adapters(local: LocalLM, lora: LoraSettings) -> nn.Module:
    """The base wrapped in LoRA adapters on `lora.target_modules`: A from `lora.init_seed`, B zero (eval mode).

    BadInput when a target names no linear layer of the base, or the rank exceeds a wrapped layer's size."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    layers = _adaptable(local.model)
    hit = {t: [n for n in layers if _matches(n, t)] for t in lora.target_modules}
    missing = [t for t, names in hit.items() if not names]
    if missing:
        known = sorted({n.rsplit(".", 1)[-1] for n in layers})
        raise BadInput(f"target_modules {missing} name no linear layer of {local.root}; its linear layers are "
                       f"called {', '.join(known[:16])}")
    wrapped = [layers[n] for names in hit.values() for n in names]
    small = min(min(m.weight.shape) for m in wrapped)
    if lora.rank > small:
        raise BadInput(f"rank {lora.rank} exceeds the smallest wrapped layer's size ({small}); choose rank <= {small}")
    conv = any(isinstance(m, Conv1D) for m in wrapped)
    if conv and not all(isinstance(m, Conv1D) for m in wrapped):  # peft's fan_in_fan_out is one flag for all
        raise BadInput(f"target_modules {list(lora.target_modules)} mix GPT-2 style Conv1D layers with linear ones; "
                       "target one kind")
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=list(lora.target_modules),
                        lora_dropout=0.0, bias="none", fan_in_fan_out=conv, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's notes on fan_in_fan_out and Conv1D: handled above
        model = get_peft_model(local.model, config)
    gen = torch.Generator().manual_seed(lora.init_seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_A" in n:  # kaiming-uniform (a=sqrt(5)) as torch's Linear and peft use: bound 1/sqrt(fan_in)
                bound = 1.0 / p.shape[1] ** 0.5
                p.copy_(torch.rand(p.shape, generator=gen) * (2 * bound) - bound)
            elif "lora_B" in n:
                p.zero_()
    return model.eval()


class HFCausalLMFamily:
    """A local Hugging Face causal LM with per-day LoRA adapters as a model family (core/family.py).

    `pinned`: the checksums the model directory's files must have (what a device recorded at its creation,
    record.py); a directory that differs is a CorruptFile before the model is loaded."""

    name = "hf-causal-lm"
    reads = "log"  # the device data it trains on: the utterance log (runner/session.py opens it)

    def __init__(self, store=None, model_dir: Path | str | None = None, lora: LoraSettings | None = None,
                 train: LMTrainConfig | None = None, attn_implementation: str = "sdpa",
                 pinned: dict[str, str] | None = None) -> None:
        if lora is not None and not isinstance(lora, LoraSettings):
            raise BadInput(f"lora must be a LoraSettings(rank, alpha, target_modules), got {type(lora).__name__}")
        if train is not None and not isinstance(train, LMTrainConfig):
            raise BadInput(f"train must be an LMTrainConfig, got {type(train).__name__}")
        if attn_implementation not in ATTENTION:
            raise BadInput(f"attn_implementation must be one of {ATTENTION}, got {attn_implementation!r}")
        self.store = store
        self.lora, self.cfg = lora or LoraSettings(), train or LMTrainConfig()
        local = load_local(shipped_model_dir() if model_dir is None else model_dir, attn_implementation, pinned)
        self.root, self.tokenizer, self.checksums = local.root, local.tokenizer, local.checksums
        self._initial = with_adapters(local, self.lora)
        self.checkpoint_every, self.delta_dtype = self.cfg.checkpoint_every, self.cfg.delta_dtype
        self.min_repair_steps = self.cfg.repair_steps
        self.model_id = model_id(digest(self.checksums), self.lora, self.cfg, attn_implementation)
        self._public: list[str] | None = None
        self._graph_memo: dict = {}  # the base graph this process exported (shared by every bound copy)

    def bind(self, store) -> "HFCausalLMFamily":
        """This family reading its utterances from `store` (a LogStore, or a view of one); the base is shared."""
        bound = copy.copy(self)
        bound.store = store
        return bound

    @property
    def public(self) -> list[str]:
        """CLINC150 train + oos_train utterances: the public text each day mixes in."""
        if self._public is None:
            data = load_clinc()
            self._public = [t for t, _ in data["train"] + data["oos_train"]]
        return self._public

    # -- the protocol ------------------------------------------------------------------------------
    def new_model(self) -> nn.Module:
        return copy.deepcopy(self._initial)

    def personal(self, model: nn.Module) -> list[str]:
        return [n for n, _ in model.named_parameters() if "lora_A" in n or "lora_B" in n]

    def fingerprint(self, key: str) -> str:
        h = hashlib.sha256()
        for u in self.store.by_day(key):
            h.update(f"{u.id}\x1f{u.utc}\x1f{u.tz}\x1f{u.text}\x1e".encode())
        return h.hexdigest()

    def _fit(self, model: nn.Module, texts: list[str], seed: int, steps: int | None,
             done: Callable[[], bool] | None = None, lr: float | None = None) -> int:
        rng = random.Random(seed)
        torch.manual_seed(seed)  # dropout, where the base has any
        batches = minibatches(rng, texts, self.cfg.batch_size, steps, self.cfg.epochs)
        return fit(model, batches, lambda b: lm_loss(model, self.tokenizer, b, self.cfg.max_len),
                   self.cfg.lr if lr is None else lr, self.cfg.repair_steps, done)

    def train_day(self, model: nn.Module, key: str, seed: int) -> list[str]:
        """Train `key`'s utterances (plus public text) into the adapters in place; reads no other day."""
        rng = random.Random(seed ^ 0x5EED)
        today = [u.text for u in self.store.by_day(key)]
        if today:
            self._fit(model, today + sample(rng, self.public, self.cfg.replay_public), seed, None)
        return []

    def _retained(self) -> list[str]:
        return [u.text for u in self.store.all()]

    def retained_loss(self, model: nn.Module, retained: list[str] | None = None) -> float:
        """Mean per-utterance loss (eval mode) on `repair_sample` retained utterances, the same ones for the same
        log: the yardstick a long repair stops at."""
        rows = sample(random.Random(0x1055), self._retained() if retained is None else retained,
                      self.cfg.repair_sample)
        return float(text_losses(model, self.tokenizer, rows, self.cfg.max_len).mean()) if rows else 0.0

    def repair(self, model: nn.Module, seed: int, steps: int | None = None, target: float | None = None,
               lr: float | None = None) -> int:
        """`steps` (default `repair_steps`) of fine-tuning on retained utterances mixed with public text; with
        `target`, stop once the retained loss is back at or below it. Returns the steps taken."""
        steps = self.cfg.repair_steps if steps is None else steps
        rng = random.Random(seed ^ 0x5EED)
        retained = self._retained()
        n = max(self.cfg.repair_sample, steps * self.cfg.batch_size - self.cfg.replay_public)
        texts = sample(rng, retained, n) + sample(rng, self.public, self.cfg.replay_public)
        done = None if target is None else (lambda: self.retained_loss(model, retained) <= target)
        return self._fit(model, texts, seed, steps, done, lr)

    def repair_budget(self, subtracted: int, retained: int) -> int:
        return self.cfg.repair_budget(subtracted)

    def example_losses(self, model: nn.Module, items: Sequence) -> torch.Tensor:
        return text_losses(model, self.tokenizer, [u.text for u in items], self.cfg.max_len)

    def within(self, first: str, last: str) -> "HFCausalLMFamily":
        return self.bind(_Window(self.store, first, last))

    def publish(self, root: Path, model: nn.Module, state: str, formats: Sequence[str] | None = None) -> str:
        """Write the adapter (ONNX Runtime's .onnx_adapter, PEFT's safetensors + config) as the device's live
        export, the base graph first if the device has none yet (base_graph); its version."""
        from peft import get_peft_model_state_dict

        from ...export.lm_onnx import adapter_bytes

        check_formats(formats)
        state_dict = get_peft_model_state_dict(model)
        lm = self.base_graph(Path(root))
        files = {ADAPTER_FILE: tensors_to_bytes(state_dict), ADAPTER_CONFIG: self.adapter_config(model),
                 ONNX_ADAPTER: adapter_bytes({k: v.detach().float().numpy() for k, v in state_dict.items()})}
        return publish_adapter(root, files, state, self.model_id, lm)

    def base_graph(self, root: Path) -> dict:
        """DIR/cache/lm-<model id>/: the base graph for ONNX Runtime (export/lm_onnx.py) and the tokenizer,
        written when missing or changed, else kept; the export manifest's `lm` entry. graph.json (sealed)
        records the graph's SHA-256, size and mtime: a graph whose size or mtime moved is hashed again and
        re-exported if it differs. Within a process one export serves every device of this family (copied)."""
        from peft import get_peft_model_state_dict

        from ...core.fsio import sealed_json_bytes, sha256_file, unseal_json
        from ...export.lm_onnx import export_base
        from ...export.publish import CACHE

        folder = root / CACHE / f"lm-{self.model_id}"
        graph, tok, rec = folder / "model.onnx", folder / "tokenizer.json", folder / "graph.json"
        tok_bytes = self.tokenizer.backend_tokenizer.to_str().encode()
        eos = self.tokenizer.eos_token_id
        bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else eos
        try:
            known = {k: unseal_json(rec.read_bytes())[k] for k in ("graph_sha256", "size", "mtime_ns")}
            st = graph.stat()
            if (known["size"], known["mtime_ns"]) != (st.st_size, st.st_mtime_ns) and sha256_file(graph) != known["graph_sha256"]:
                known = None
        except (OSError, ValueError, KeyError, TypeError):
            known = None
        if known is None:
            folder.mkdir(parents=True, exist_ok=True)
            made, want = self._graph_memo.get("path"), self._graph_memo.get("sha256")
            if made is not None and Path(made).is_file() and sha256_file(made) == want:
                shutil.copyfile(made, graph)
            else:
                initial = self.new_model()
                defaults = {k: v.detach().float().numpy() for k, v in get_peft_model_state_dict(initial).items()}
                export_base(initial, self.personal(initial), defaults, graph, [bos] + [eos] * 7)
            st = graph.stat()
            known = {"graph_sha256": sha256_file(graph), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            self._graph_memo.update(path=str(graph), sha256=known["graph_sha256"])
            atomic_write_bytes(rec, sealed_json_bytes(known))
        if not tok.is_file() or tok.read_bytes() != tok_bytes:
            atomic_write_bytes(tok, tok_bytes)
        return {"graph": f"{CACHE}/{folder.name}/{graph.name}", "graph_sha256": known["graph_sha256"],
                "tokenizer": f"{CACHE}/{folder.name}/{tok.name}", "tokenizer_sha256": hashlib.sha256(tok_bytes).hexdigest(),
                "bos_id": bos, "eos_id": eos, "max_len": self.cfg.max_len, "runtime": "onnxruntime LoraAdapter"}

    def adapter_config(self, model: nn.Module) -> bytes:
        """PEFT's adapter_config.json for `model`, with the base named by its directory's name (no local path)."""
        import json

        conf = {k: v for k, v in model.peft_config["default"].to_dict().items()}
        conf["base_model_name_or_path"] = self.root.name
        return (json.dumps(conf, indent=2, sort_keys=True, default=sorted) + "\n").encode()


class _Window:
    """The log seen through days [first, last]: what a SISA shard of this family trains on."""

    def __init__(self, store, first: str, last: str) -> None:
        self.store, self.first, self.last = store, first, last

    def by_day(self, day: str) -> list:
        return self.store.by_day(day) if self.first <= day <= self.last else []

    def all(self) -> list:
        return self.store.by_range(self.first, self.last)

    def day_counts(self) -> dict[str, int]:
        return {d: n for d, n in self.store.day_counts().items() if self.first <= d <= self.last}

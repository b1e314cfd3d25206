"""The ledger: per-day updates Δ_k, checkpoints and the current personal state, on disk.

Only the *personal* parameters are stored (the base model is public and shipped). Layout under DIR/ledger/:

    manifest.json                         the commit point; format 3, see `Manifest`; sealed with its own SHA-256
    state-<sha12>.safetensors             personal parameters now (fp32)
    deltas/<date>-<sha12>.safetensors     Δ_date = θ_after(date) − θ_before(date), stored in `delta_dtype`
    checkpoints/<date>-<sha12>.safetensors  θ_after(date), fp32, every `checkpoint_every` trained days

File names carry a hash prefix so a new version of a file never overwrites the one the manifest still
references: new files are written beside the old, the manifest is swapped by rename, then files that no
manifest references are removed (`collect_garbage`). A crash at any point leaves the old or the new version.

The ledger is personal data (DESIGN invariant 3): a forgotten day's delta, and every checkpoint that
depends on it, must leave the disk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import crashpoints
from .errors import CorruptFile
from .keys import check_key
from .fsio import (atomic_write_bytes, clean_temp_files, read_checked, remove_durably, sealed_json_bytes, sha256_bytes,
                   unseal_json)

FORMAT = 3  # 2: the manifest carries its own checksum (fsio.sealed_json_bytes); 3: DayEntry.reads
REBUILD = ("the ledger is derived from the log alone: delete the device's ledger directory and run "
           "`assistant-forget train` to rebuild it")  # what to do about a corrupt ledger file
if TYPE_CHECKING:
    import torch

DELTA_DTYPES = ("float32", "float16", "bfloat16")  # storage dtypes of deltas (torch dtype names)


@dataclass
class FileRef:
    file: str  # path relative to the ledger directory
    sha256: str  # checksum of the file's bytes


@dataclass
class DayEntry:
    data_hash: str  # fingerprint of the day's training data when it was trained
    delta: FileRef | None  # Δ of the day; None once a fast forget removed it
    reads: tuple[str, ...] = ()  # other days whose data the day's update read (its replay), ascending


@dataclass
class Manifest:
    format: int = FORMAT
    model: str = ""  # identifies the base model and personalisation scheme the state belongs to
    checkpoint_every: int = 7  # a checkpoint after every C-th trained day
    delta_dtype: str = "float16"  # storage dtype of deltas
    days: dict[str, DayEntry] = field(default_factory=dict)  # trained days in date order
    checkpoints: dict[str, FileRef] = field(default_factory=dict)  # date -> θ after that day
    state: FileRef | None = None  # current personal parameters; None = the initial (base) state
    version: str = ""  # hash of the current personal state (the model version)
    pending_exact_from: str | None = None  # earliest day an exact pass must replay from (approximate state)

    @property
    def approximate(self) -> bool:
        return self.pending_exact_from is not None

    def readers(self, days) -> list[str]:
        """Trained days, other than `days`, whose stored delta was trained on the data of one of `days`."""
        gone = set(days)
        return [d for d, e in self.days.items() if d not in gone and e.delta is not None and gone.intersection(e.reads)]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "Manifest":
        ref = lambda r: None if r is None else FileRef(**r)  # noqa: E731
        return cls(
            format=obj["format"], model=obj["model"], checkpoint_every=obj["checkpoint_every"],
            delta_dtype=obj["delta_dtype"],
            days={d: DayEntry(e["data_hash"], ref(e["delta"]), tuple(e["reads"]))
                  for d, e in sorted(obj["days"].items())},
            checkpoints={d: FileRef(**r) for d, r in sorted(obj["checkpoints"].items())},
            state=ref(obj["state"]), version=obj["version"], pending_exact_from=obj["pending_exact_from"],
        )


def state_version(state: dict[str, torch.Tensor]) -> str:
    """The model version: a hash of the personal parameters' exact bytes."""
    from .tensorfile import tensors_to_bytes

    return sha256_bytes(tensors_to_bytes(state))[:16]


def all_refs(m: Manifest) -> list[FileRef]:
    """Every file the manifest references: deltas, checkpoints, the current state."""
    refs = [e.delta for e in m.days.values()] + list(m.checkpoints.values()) + [m.state]
    return [r for r in refs if r is not None]


class Binding(Protocol):
    """Told before and after a manifest commit, with the digests of the old (None: none) and new manifest."""

    def before_commit(self, old: str | None, new: str) -> None: ...

    def after_commit(self, new: str) -> None: ...


class Ledger:
    """Reads and writes one device's ledger directory. Not thread-safe; hold the device lock to write."""

    def __init__(self, root: Path, binding: "Binding | None" = None) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self.binding = binding  # told around every manifest commit (the device binds its ledger to itself)
        self._checked: tuple[bytes, dict] | None = None  # last manifest bytes whose seal and format checked out

    # -- manifest -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest_for(self, model_id: str, checkpoint_every: int, delta_dtype: str) -> Manifest:
        """The committed manifest, refused (CorruptFile) when it belongs to another model; a fresh one with these
        settings when the ledger does not exist yet."""
        m = self.load_manifest()
        if not self.exists():
            m.model, m.checkpoint_every, m.delta_dtype = model_id, checkpoint_every, delta_dtype
        elif m.model != model_id:
            raise CorruptFile(f"{self.manifest_path}: ledger belongs to model {m.model!r}, not {model_id!r}")
        return m

    def load_manifest(self) -> Manifest:
        """The committed manifest (a fresh one if the ledger does not exist yet)."""
        if self.root.exists() and not self.root.is_dir():
            raise CorruptFile(f"{self.root}: not a directory; {REBUILD}")
        if not self.exists():
            return Manifest()
        try:
            data = self.manifest_path.read_bytes()
            if self._checked is None or self._checked[0] != data:  # same bytes: already checked, parse again
                obj = unseal_json(data)
                if obj.get("format") != FORMAT:
                    raise CorruptFile(f"{self.manifest_path}: ledger format {obj.get('format')} is not supported "
                                      f"(expected {FORMAT}); {REBUILD}")
                self._checked = (data, obj)
            return Manifest.from_json(self._checked[1])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptFile(f"{self.manifest_path}: unreadable ledger manifest ({e}); {REBUILD}") from None

    def digest(self) -> str | None:
        """SHA-256 of the committed manifest's bytes (None when there is none): what a device binds to."""
        try:
            return sha256_bytes(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CorruptFile(f"{self.manifest_path}: unreadable ledger manifest ({e.strerror}); {REBUILD}") from None

    def commit(self, m: Manifest) -> None:
        """Atomically replace the manifest, then remove files it no longer references."""
        self.root.mkdir(parents=True, exist_ok=True)
        data = sealed_json_bytes(m.to_json())
        if self.binding is not None:
            self.binding.before_commit(self.digest(), sha256_bytes(data))
        atomic_write_bytes(self.manifest_path, data)
        crashpoints.hit("ledger.manifest_replaced")
        if self.binding is not None:
            self.binding.after_commit(sha256_bytes(data))
        self.collect_garbage(m)

    # -- tensor files -------------------------------------------------------------------------
    def write(self, kind: str, stem: str, tensors: dict[str, torch.Tensor]) -> FileRef:
        """Write tensors as `<kind>/<stem>-<sha12>.safetensors` (kind '' = ledger root); return the ref.

        `stem` (a key) is checked to be a plain file-name part: a key like "a/b" never becomes a folder."""
        from .tensorfile import save_tensors, tensors_to_bytes

        check_key(stem, "ledger key")
        data = tensors_to_bytes(tensors)
        sha = sha256_bytes(data)
        rel = (f"{kind}/" if kind else "") + f"{stem}-{sha[:12]}.safetensors"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            save_tensors(path, tensors)
            crashpoints.hit("ledger.tensor_written")
        return FileRef(rel, sha)

    def read(self, ref: FileRef) -> dict[str, torch.Tensor]:
        """Load a referenced file, verifying its checksum (CorruptFile names the file otherwise)."""
        try:
            from .tensorfile import load_tensors

            return load_tensors(self.root / ref.file, ref.sha256)
        except CorruptFile as e:
            raise CorruptFile(f"{e}; {REBUILD}") from None

    def write_delta(self, m: Manifest, day: str, delta: dict[str, torch.Tensor]) -> FileRef:
        import torch

        dtype = getattr(torch, m.delta_dtype)
        return self.write("deltas", day, {k: v.to(dtype) for k, v in delta.items()})

    def read_delta(self, ref: FileRef) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in self.read(ref).items()}

    # -- housekeeping -------------------------------------------------------------------------
    def referenced(self, m: Manifest) -> set[str]:
        return {r.file for r in all_refs(m)}

    def collect_garbage(self, m: Manifest) -> list[Path]:
        """Remove every tensor file and temp file under the ledger that `m` does not reference."""
        keep = self.referenced(m)
        removed = clean_temp_files(self.root)
        for p in sorted(self.root.rglob("*.safetensors")):
            if p.relative_to(self.root).as_posix() not in keep:
                remove_durably(p)
                crashpoints.hit("ledger.file_removed")
                removed.append(p)
        return removed

    def verify(self, m: Manifest | None = None) -> None:
        """Check every referenced file exists and matches its checksum; CorruptFile names the first bad one.

        Hashes the bytes without parsing them (a file is parsed, and checked again, when it is read)."""
        for ref in all_refs(m or self.load_manifest()):
            try:
                read_checked(self.root / ref.file, ref.sha256)
            except CorruptFile as e:
                raise CorruptFile(f"{e}; {REBUILD}") from None

    def size_bytes(self) -> int:
        """Bytes of every file under the ledger directory (the ledger budget counts all of them)."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

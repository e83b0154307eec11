"""Where zoo downloads live, and the registry of what was downloaded with which sha256.

Layout of ``$OBJDET_HOME/zoo`` (``$OBJDET_HOME`` defaults to ``$XDG_CACHE_HOME/objdet``, or
``~/.cache/objdet``)::

    registry.json                  {"models": {NAME: record}}, written atomically
    mscoco_label_map.pbtxt         the label map the converted configs name
    downloads/NAME.tar.gz.partial  a download in progress (resumed by the next download)
    NAME/checkpoint/ckpt-0.*       the tarball's checkpoint and pipeline.config (TF2 zoo layout)
    NAME/pipeline.config
    NAME/objdet/                   the converted model: pipeline.config + ckpt-0.pt

A model is cached when its folder and its registry record exist; both appear only once the
tarball was complete, its sha256 matched and it was extracted. The record keeps the tarball's
sha256 (pinned by the catalog, or recorded at the first download: a later download must
match it) and the sha256 of every extracted file, checked on every load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from objdet.atomic import atomic_write
from objdet.errors import DataError

HOME_ENV = "OBJDET_HOME"
REGISTRY_VERSION = 1


def objdet_home() -> Path:
    """``$OBJDET_HOME``, else ``$XDG_CACHE_HOME/objdet``, else ``~/.cache/objdet``."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "objdet"


@dataclass
class CacheRecord:
    """What the registry keeps of one downloaded model."""

    url: str  # where it was downloaded from
    sha256: str  # of the tarball
    pinned: bool  # True: the catalog's hash; False: recorded at the first download
    size: int  # bytes of the tarball
    files: dict[str, str] = field(default_factory=dict)  # extracted path -> sha256
    conversion: str = ""  # "" not tried; "converted"; or why it was skipped


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ZooCache:
    """The zoo's folder under ``root`` (default ``objdet_home()/zoo``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else objdet_home() / "zoo"

    @property
    def registry_path(self) -> Path:
        return self.root / "registry.json"

    @property
    def label_map_path(self) -> Path:
        return self.root / "mscoco_label_map.pbtxt"

    def model_dir(self, name: str) -> Path:
        return self.root / name

    def checkpoint_prefix(self, name: str) -> Path:
        return self.model_dir(name) / "checkpoint" / "ckpt-0"

    def converted_dir(self, name: str) -> Path:
        return self.model_dir(name) / "objdet"

    def partial_path(self, name: str) -> Path:
        return self.root / "downloads" / f"{name}.tar.gz.partial"

    def records(self) -> dict[str, CacheRecord]:
        """Every model of the registry (empty when there is none yet)."""
        try:
            data = json.loads(self.registry_path.read_text())
            return {name: CacheRecord(**record) for name, record in data["models"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(
                f"{self.registry_path}: not a zoo registry ({error}); delete it to start over"
            ) from None

    def record(self, name: str) -> CacheRecord | None:
        """The registry's record of ``name`` if its folder is there too, else None."""
        record = self.records().get(name)
        return record if record is not None and self.model_dir(name).is_dir() else None

    def write_record(self, name: str, record: CacheRecord | None) -> None:
        """Set (or with None remove) the record of ``name``; atomic and under a lock."""
        with self.lock("registry"):
            records = self.records()
            if record is None:
                records.pop(name, None)
            else:
                records[name] = record
            data = {"version": REGISTRY_VERSION,
                    "models": {key: asdict(value) for key, value in sorted(records.items())}}
            with atomic_write(self.registry_path, "w") as handle:
                json.dump(data, handle, indent=2)
                handle.write("\n")

    def verify_files(self, name: str, record: CacheRecord) -> None:
        """``DataError`` unless every extracted file still has its recorded sha256."""
        folder = self.model_dir(name)
        for relative, expected in sorted(record.files.items()):
            path = folder / relative
            found = sha256_of(path) if path.is_file() else "missing"
            if found != expected:
                raise DataError(
                    f"zoo cache {path}: sha256 {found} differs from {expected} recorded at "
                    f"download; run `objdet zoo download {name} --force` to fetch it again"
                )

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold ``root/.NAME.lock`` exclusively: one writer per model (and per registry)
        across processes, e.g. the ranks of a distributed run that all need one model."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f".{name}.lock").open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

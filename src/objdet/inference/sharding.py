"""Which records one batch-inference process handles, and which files it writes.

A run over ``R`` input records may be split over ``n`` processes (``--shard i --num_shards
n``, or torchrun's ``RANK``/``WORLD_SIZE``): process ``i`` handles the records whose global
index (counted over all input files, in order) is ``i mod n`` and writes one file,
``OUT-0000i-of-0000n`` (TensorFlow's sharded naming). One process may also write ``OUT@N``
itself: its record ``k`` goes to ``OUT-0000{k mod N}-of-0000N``. Both give the same files:
``n`` shard processes together write the records one ``OUT@n`` run writes, in the same files
and order (byte for byte when a record's detections do not depend on which images share its
batch, as in the tests; batched ONNX Runtime may differ in the last float bits otherwise).
No torch import here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from objdet.data.input_paths import sharded_name
from objdet.errors import ConfigError

_OUTPUT_SHARDS = re.compile(r"^(?P<base>.+)@(?P<count>\d+)$")


@dataclass(frozen=True)
class Shard:
    """Process ``index`` of ``count``: it handles global records ``index, index + count, ...``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"shard {self.index} of {self.count}: expected num_shards >= 1 and "
                f"0 <= shard < num_shards"
            )

    def record_indices(self, num_records: int) -> range:
        """The global record indices this shard handles, in input order."""
        return range(self.index, num_records, self.count)


def resolve_shard(
    shard: int | None, num_shards: int | None, environ: Mapping[str, str] = os.environ,
) -> Shard:
    """The flags ``--shard``/``--num_shards`` when given, else torchrun's ``RANK`` of
    ``WORLD_SIZE`` when it is set above 1, else the whole run (shard 0 of 1)."""
    if shard is not None or num_shards is not None:
        if shard is None or num_shards is None:
            raise ConfigError("--shard and --num_shards go together; got only one of them")
        return Shard(shard, num_shards)
    world_size = environ.get("WORLD_SIZE", "")
    if not world_size or world_size == "1":
        return Shard()
    rank = environ.get("RANK", "")
    if not (world_size.isdigit() and rank.isdigit()):
        raise ConfigError(
            f"WORLD_SIZE={world_size!r} RANK={rank!r}: expected two integers (torchrun sets them)"
        )
    return Shard(int(rank), int(world_size))


def split_output_spec(output_path: str) -> tuple[str, int]:
    """``OUT@N`` -> (``OUT``, N); ``OUT`` -> (``OUT``, 1)."""
    match = _OUTPUT_SHARDS.match(output_path)
    if match is None:
        return output_path, 1
    count = int(match["count"])
    if count < 1:
        raise ConfigError(f"output path {output_path}: @N needs N >= 1")
    return match["base"], count


def output_paths(output_spec: str, shard: Shard) -> list[str]:
    """The files one process writes for ``output_spec`` (``OUT`` or ``OUT@N``); its record
    ``k`` goes to file ``k mod len(paths)``."""
    base, count = split_output_spec(output_spec)
    if shard.count == 1:
        return [base] if count == 1 else [sharded_name(base, i, count) for i in range(count)]
    if count not in (1, shard.count):
        raise ConfigError(
            f"output path {output_spec}: {count} output shards, but the run is split over "
            f"{shard.count} processes; give OUT or OUT@{shard.count}"
        )
    return [sharded_name(base, shard.index, shard.count)]


def progress_path(output_spec: str, paths: list[str]) -> Path:
    """The resume sidecar of a run: hidden, beside its output (``.NAME.progress.json``)."""
    if len(paths) == 1:
        only = Path(paths[0])
        return only.with_name(f".{only.name}.progress.json")
    spec = Path(output_spec)
    return spec.with_name(f".{spec.name}.progress.json")

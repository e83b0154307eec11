"""Expand the OD API's ``input_path`` spellings into a list of files.

Accepted, and combinable in one comma-separated string or a list of strings:

* a plain file path: ``data/train.record``;
* a glob: ``data/train-?????-of-00010``, ``data/*.record`` (sorted, like ``tf.io.gfile.glob``);
* a sharded set: ``data/train.record@10`` -> ``data/train.record-00000-of-00010`` ...
  ``-00009-of-00010`` (TensorFlow's sharded naming, 5-digit zero-padded).

Missing data is an error, never an empty dataset: a plain path that does not exist, a glob
matching nothing, and an incomplete sharded set (``@N``, or a glob whose pattern would also
match the absent shard names) raise ``DataError`` naming what is missing.

Duplicates are kept (as TensorFlow does: listing a file twice reads it twice). Files named
``X.idx`` whose ``X`` is also matched are objdet's TFRecord offset indexes and are dropped
from glob results. No torch import here.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Sequence

from objdet.errors import DataError

_SHARD_SPEC = re.compile(r"^(?P<base>.+)@(?P<count>\d+)$")
_SHARD_NAME = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")
_GLOB_CHARS = re.compile(r"[*?\[]")
INDEX_SUFFIX = ".idx"


def sharded_name(base: str, index: int, num_shards: int) -> str:
    """TensorFlow's shard file name: ``base-0000k-of-0000N`` (k is 0-based)."""
    return f"{base}-{index:05d}-of-{num_shards:05d}"


def expand_input_paths(spec: str | Sequence[str]) -> list[str]:
    """Every file named by ``spec``, in order; ``DataError`` when anything named is missing.

    Args:
        spec: one string (comma-separated items allowed) or a sequence of such strings
            (the repeated ``input_path`` field of an input reader config).

    Returns:
        File paths, each item's matches in sorted order, items in the order given.
    """
    items = _split_items(spec)
    if not items:
        raise DataError(f"no input paths given (got {spec!r})")
    paths: list[str] = []
    for item in items:
        paths.extend(_expand_item(item))
    return paths


def _split_items(spec: str | Sequence[str]) -> list[str]:
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    items: list[str] = []
    for entry in specs:
        items.extend(part.strip() for part in os.fspath(entry).split(",") if part.strip())
    return [os.path.expanduser(item) for item in items]


def _expand_item(item: str) -> list[str]:
    if os.path.isfile(item):  # a real file wins over any special reading of its name
        return [item]
    sharded = _SHARD_SPEC.match(item)
    if sharded:
        return _expand_sharded(sharded["base"], int(sharded["count"]), item)
    if _GLOB_CHARS.search(item):
        return _expand_glob(item)
    if os.path.isdir(item):
        raise DataError(
            f"input path {item!r} is a directory; name the files (e.g. '{item}/*.record')"
        )
    raise DataError(f"input path {item!r}: file not found")


def _expand_sharded(base: str, num_shards: int, item: str) -> list[str]:
    if num_shards < 1:
        raise DataError(f"input path {item!r}: a sharded set needs at least 1 shard")
    names = [sharded_name(base, index, num_shards) for index in range(num_shards)]
    missing = [name for name in names if not os.path.isfile(name)]
    if missing:
        raise DataError(
            f"input path {item!r}: {len(missing)} of {num_shards} shards missing: "
            f"{_list_names(missing)}"
        )
    return names


def _expand_glob(pattern: str) -> list[str]:
    matches = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
    matched = set(matches)
    matches = [
        path
        for path in matches
        if not (path.endswith(INDEX_SUFFIX) and path[: -len(INDEX_SUFFIX)] in matched)
    ]
    if not matches:
        raise DataError(f"input path {pattern!r}: the pattern matches no files")
    missing = _missing_shards(pattern, matches)
    if missing:
        raise DataError(
            f"input path {pattern!r}: incomplete sharded set, missing {_list_names(missing)}"
        )
    return matches


def _missing_shards(pattern: str, matches: list[str]) -> list[str]:
    """Shard names the pattern would match that are absent from a set it partly matched.

    ``train-?????-of-00010`` matching 9 shards misses one; ``train-0000[0-4]-of-00010``
    asks only for five, so the other five are not missing.
    """
    families: dict[tuple[str, int], set[int]] = {}
    for path in matches:
        shard = _SHARD_NAME.match(path)
        if shard:
            key = (shard["base"], int(shard["count"]))
            families.setdefault(key, set()).add(int(shard["index"]))
    missing: list[str] = []
    for (base, count), present in sorted(families.items()):
        for index in range(count):
            name = sharded_name(base, index, count)
            if index not in present and fnmatch.fnmatchcase(name, pattern):
                missing.append(name)
    return missing


def _list_names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")

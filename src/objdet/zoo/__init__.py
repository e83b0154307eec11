"""The OD API's TF2 detection zoo: list it, download a model, convert it for objdet.

    from objdet import zoo
    zoo.CATALOG["ssd_mobilenet_v2_320x320_coco17_tpu-8"].coco_map   # (20.2,)
    result = zoo.download("ssd_mobilenet_v2_320x320_coco17_tpu-8")
    result.cached.checkpoint_prefix      # $OBJDET_HOME/zoo/NAME/checkpoint/ckpt-0 (TF2)
    result.conversion.directory          # $OBJDET_HOME/zoo/NAME/objdet (pipeline.config, ckpt-0.pt)

A config's ``fine_tune_checkpoint: "zoo:NAME"`` is :func:`resolve_checkpoint`'s: the cached
TF2 checkpoint, downloaded first when absent. Downloads happen only when asked, resume
(HTTP Range), are checked by sha256 and work offline once cached; ``$OBJDET_HOME`` moves the
cache and ``$OBJDET_ZOO_URL`` names a mirror (:mod:`objdet.zoo.catalog`,
:mod:`objdet.zoo.cache`). Importing this package does not import torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from objdet.zoo.cache import CacheRecord, ZooCache, objdet_home
from objdet.zoo.catalog import CATALOG, URL_ENV, ZooModel, find_model, url_prefix
from objdet.zoo.download import CachedModel, ensure_cached
from objdet.zoo.fetch import Progress

if TYPE_CHECKING:
    from objdet.zoo.convert import Conversion

__all__ = [
    "CATALOG", "URL_ENV", "ZOO_PREFIX", "CacheRecord", "CachedModel", "DownloadResult", "ZooCache",
    "ZooModel", "download", "find_model", "objdet_home", "resolve_checkpoint", "url_prefix",
]

logger = logging.getLogger(__name__)

ZOO_PREFIX = "zoo:"


@dataclass(frozen=True)
class DownloadResult:
    cached: CachedModel
    conversion: Conversion | None  # None: not asked for


def download(
    name: str | ZooModel, cache: ZooCache | None = None, *, convert: bool = True,
    force: bool = False, sha256: str | None = None, attempts: int = 3,
    progress: Progress | None = None,
) -> DownloadResult:
    """Download zoo model ``name`` into the cache unless it is there (``force``: again),
    then convert it into an objdet model directory (skipped, with the reason, for a model
    objdet cannot build yet). ``sha256`` pins the tarball's hash."""
    from objdet.zoo.convert import convert_cached

    model = name if isinstance(name, ZooModel) else find_model(name)
    cache = cache or ZooCache()
    cached = ensure_cached(model, cache, force=force, sha256=sha256, attempts=attempts,
                           progress=progress)
    if not convert:
        return DownloadResult(cached, None)
    with cache.lock(model.name):
        conversion = convert_cached(cached, cache, force=cached.downloaded)
        status = "converted" if conversion.directory else f"skipped: {conversion.skipped_because}"
        if status != cached.record.conversion:
            cached = replace(cached, record=replace(cached.record, conversion=status))
            cache.write_record(model.name, cached.record)
    return DownloadResult(cached, conversion)


def resolve_checkpoint(reference: str, cache: ZooCache | None = None) -> Path:
    """``zoo:NAME`` -> the cached TF2 checkpoint prefix ``.../NAME/checkpoint/ckpt-0``,
    downloaded first when the model is not cached (logged). Other references are returned
    as they are."""
    if not reference.startswith(ZOO_PREFIX):
        return Path(reference)
    model = find_model(reference.removeprefix(ZOO_PREFIX))
    cache = cache or ZooCache()
    if cache.record(model.name) is None:
        logger.info("%s is not in the cache %s: downloading %s", reference, cache.root,
                    model.url())
    return ensure_cached(model, cache).checkpoint_prefix

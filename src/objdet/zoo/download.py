"""A zoo model in the cache: fetched (resumably), its sha256 checked, extracted, recorded.

Nothing reaches the network unless the model is not cached yet (or ``force`` is given).
A cached model is checked against the sha256 recorded for each of its files on every use.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from objdet.atomic import atomic_directory, require_writable_directory
from objdet.errors import DataError, ObjdetError
from objdet.zoo.archive import extract_model_archive
from objdet.zoo.cache import CacheRecord, ZooCache, sha256_of
from objdet.zoo.catalog import URL_ENV, ZooModel
from objdet.zoo.fetch import IncompleteDownload, NetworkError, Progress, fetch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedModel:
    model: ZooModel
    directory: Path  # NAME/ in the cache: checkpoint/ and pipeline.config
    record: CacheRecord
    downloaded: bool  # fetched by this call (False: it was in the cache)

    @property
    def checkpoint_prefix(self) -> Path:
        return self.directory / "checkpoint" / "ckpt-0"

    @property
    def pipeline_config(self) -> Path:
        return self.directory / "pipeline.config"


def ensure_cached(
    model: ZooModel, cache: ZooCache | None = None, *, force: bool = False,
    sha256: str | None = None, attempts: int = 3, progress: Progress | None = None,
) -> CachedModel:
    """``model`` from the cache (its files' sha256 checked), or downloaded into it first.

    ``sha256`` pins the tarball's hash (as the catalog's ``model.sha256`` does); otherwise
    the hash recorded at the first download must match. ``force`` downloads again even when
    the model is cached. A failed download leaves no cache entry: at most the ``.partial``
    file a later download resumes (never one whose hash was wrong).
    """
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ObjdetError(f"sha256 of zoo model {model.name}: {sha256!r} is not 64 hex digits")
    cache = cache or ZooCache()
    require_writable_directory(cache.root, f"zoo cache {cache.root}")
    with cache.lock(model.name):
        record = cache.record(model.name)
        if record is not None and not force:
            cache.verify_files(model.name, record)
            return CachedModel(model, cache.model_dir(model.name), record, downloaded=False)
        record = _download(model, cache, sha256, attempts, progress, cached=record is not None)
        cache.write_record(model.name, record)
    return CachedModel(model, cache.model_dir(model.name), record, downloaded=True)


def _download(
    model: ZooModel, cache: ZooCache, sha256: str | None, attempts: int,
    progress: Progress | None, *, cached: bool,
) -> CacheRecord:
    url = model.url()
    partial = cache.partial_path(model.name)
    logger.info("downloading zoo model %s from %s", model.name, url)
    try:
        fetch(url, partial, attempts=attempts, progress=progress)
    except NetworkError as error:
        where = "kept in" if cached else "not in"
        mirror = os.environ.get(URL_ENV)
        mirror = f"${URL_ENV}={mirror}" if mirror else f"to use a mirror, set ${URL_ENV}"
        raise DataError(
            f"zoo model {model.name} ({where} the cache {cache.root}) cannot be downloaded "
            f"from {error} ({mirror})"
        ) from None
    except IncompleteDownload as error:
        raise DataError(
            f"zoo model {model.name}: {error}; run the download again to resume it"
        ) from None
    expected, pinned = _expected_sha256(model, cache, sha256)
    digest = sha256_of(partial)
    if expected is not None and digest != expected:
        partial.unlink()
        origin = "pinned" if pinned else "recorded at the first download"
        raise DataError(
            f"zoo model {model.name}: {url} has sha256 {digest}, expected {expected} ({origin}); "
            "the download was deleted"
        )
    try:
        with atomic_directory(cache.model_dir(model.name)) as folder:
            files = extract_model_archive(partial, model.name, folder, url)
    except DataError:
        partial.unlink()  # complete but unusable: resuming it could not help
        raise
    size = partial.stat().st_size
    partial.unlink()
    logger.info("zoo model %s: %d bytes, sha256 %s, extracted to %s",
                model.name, size, digest, cache.model_dir(model.name))
    return CacheRecord(url=url, sha256=digest, pinned=pinned, size=size, files=files)


def _expected_sha256(
    model: ZooModel, cache: ZooCache, sha256: str | None
) -> tuple[str | None, bool]:
    """(the hash the tarball must have, whether it is pinned); (None, False) at the first
    download of a model without a pinned hash."""
    pinned = sha256 or model.sha256
    if pinned:
        return pinned.lower(), True
    previous = cache.records().get(model.name)  # also when its folder was deleted since
    return (previous.sha256, previous.pinned) if previous is not None else (None, False)

"""Resumable download of one URL into a ``.partial`` file (HTTP ``Range``), with urllib.

A transfer that stops early (the connection closed or reset before ``Content-Length`` bytes
arrived) keeps what arrived; the next attempt asks for the rest with
``Range: bytes=N-`` and appends it when the server answers ``206 Partial Content`` with the
matching ``Content-Range`` (a server that answers ``200`` sends the whole file again, which
then replaces the partial one). The caller renames the complete file into place.
"""

from __future__ import annotations

import http.client
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from objdet.errors import DataError, ObjdetError

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60.0
# progress(bytes so far, total bytes or None when the server does not say)
Progress = Callable[[int, int | None], None]


class _Readable(Protocol):
    def read(self, amount: int, /) -> bytes: ...


class NetworkError(DataError):
    """The server could not be reached, or answered with an HTTP error."""


class IncompleteDownload(DataError):
    """The transfer stopped before the end; the partial file is kept to be resumed."""


def fetch(
    url: str, partial: Path, *, attempts: int = 3, progress: Progress | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> None:
    """Download ``url`` into ``partial``, resuming from what ``partial`` already holds.

    An attempt that ends early but brought bytes is followed by another (up to
    ``attempts``); ``IncompleteDownload`` when the last one still stops early (``partial``
    keeps the bytes), ``NetworkError`` when the server cannot be reached or says no.
    """
    partial.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        start = partial.stat().st_size if partial.exists() else 0
        try:
            _fetch_once(url, partial, start, progress, timeout)
            return
        except IncompleteDownload as error:
            now = partial.stat().st_size if partial.exists() else 0
            if attempt == attempts or now <= start:
                raise
            logger.warning("%s; resuming from byte %d (attempt %d of %d)",
                           error, now, attempt + 1, attempts)


def _fetch_once(
    url: str, partial: Path, start: int, progress: Progress | None, timeout: float
) -> None:
    headers = {"User-Agent": "objdet-zoo", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing after `start`: complete, or a stale file
            if _range_total(error.headers.get("Content-Range")) == start:
                return
            logger.warning("%s: the partial download %s is longer than the file; starting "
                           "over", url, partial)
            partial.unlink()
            return _fetch_once(url, partial, 0, progress, timeout)
        raise NetworkError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise NetworkError(f"{url}: {reason}") from None
    with response:
        status = getattr(response, "status", None) or 200  # file:// answers have none
        if status == 206 and _range_start(response.headers.get("Content-Range")) == start:
            mode, done = "ab", start
        else:  # the whole file (a server without Range support, or a fresh download)
            mode, done = "wb", 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        try:
            with partial.open(mode) as handle:
                done = _copy(response, handle, done, total, url, progress)
        except OSError as error:  # a full disk, say (IncompleteDownload is no OSError)
            raise ObjdetError(f"cannot write {partial}: {error.strerror or error}") from None
    if total is not None and done < total:
        raise IncompleteDownload(f"{url}: the transfer stopped at byte {done} of {total}")


def _copy(
    response: _Readable, handle: IO[bytes], done: int, total: int | None, url: str,
    progress: Progress | None,
) -> int:
    while True:
        try:
            chunk = response.read(CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as error:  # reset, timeout, IncompleteRead
            raise IncompleteDownload(
                f"{url}: the transfer stopped at byte {done} of {total or '?'} ({error})"
            ) from None
        if not chunk:
            return done
        handle.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)


def _range_start(content_range: str | None) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (content_range or "").strip())
    return int(match[1]) if match else None


def _range_total(content_range: str | None) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", (content_range or "").strip())
    return int(match[1]) if match else None

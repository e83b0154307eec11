"""``TaskQueue``: which image each session sees next, with the model's suggestions.

Orderings (``ORDERINGS``):

- ``uncertainty``: among a pool of the next ``pool_size`` unanswered images (in a seeded
  random order), the one whose suggestions the model is least sure of
  (``objdet.annotate.suggestions.uncertainty``). A background thread predicts the pool
  ahead of time with the current version, so choosing costs no inference.
- ``random``: a seeded random order (the same after a restart).
- ``file``: the source's order.

An image is leased to the session it was shown to, in the store
(``AnswerStore.lease_image``), so concurrent sessions never get the same image, even from two
app processes on one database; a session asking again before answering gets its leased image
back (a reloaded page resumes), and a lease nobody renews for ``lease_seconds`` expires (the
page renews it while it is open). Answered images are never shown again unless asked
(``include_answered``); answers given through another process count too. An image that
cannot be read or decoded is recorded in the store with its error, counted and skipped.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from dataclasses import dataclass, field

from objdet.annotate.sources import ImageSource
from objdet.annotate.store import AnswerStore
from objdet.annotate.suggestions import Suggester, Suggestion, uncertainty
from objdet.errors import DataError, ObjdetError

logger = logging.getLogger(__name__)

ORDERINGS = ("uncertainty", "random", "file")


@dataclass
class PreparedTask:
    """An image ready to show: its size and the suggestions of ``model_version``."""

    image_id: int
    key: str
    width: int
    height: int
    model_version: int
    suggestions: list[Suggestion] = field(default_factory=list)


class TaskQueue:
    def __init__(self, store: AnswerStore, source: ImageSource, suggester: Suggester, *,
                 ordering: str = "uncertainty", seed: int = 0, pool_size: int = 16,
                 lease_seconds: float = 300.0) -> None:
        if ordering not in ORDERINGS:
            raise ObjdetError(f"--order: {ordering!r}; expected one of {', '.join(ORDERINGS)}")
        self.store, self.source, self.suggester = store, source, suggester
        self.ordering, self.pool_size, self.lease_seconds = ordering, pool_size, lease_seconds
        rows = store.images(source.keys)
        self._keys = {row.id: row.key for row in rows}
        self._bad = {row.id: row.error for row in rows if row.error}
        order = [row.id for row in rows]
        if ordering != "file":
            random.Random(seed).shuffle(order)
        self._order = order
        self._answered = store.answered_image_ids()  # refreshed from the store at each choice
        self._cache: dict[int, PreparedTask] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # -- choosing ---------------------------------------------------------------------------
    def next_for(self, session: str, include_answered: bool = False) -> PreparedTask | None:
        """The task to show ``session`` now (its leased image, else the next one); None when
        nothing is left."""
        while True:
            image_id = self._choose(session, include_answered)
            if image_id is None:
                return None
            task = self.prepare(image_id)
            if task is not None:
                return task
            self.store.release_lease(session)  # unreadable: recorded by prepare; choose again

    def _choose(self, session: str, include_answered: bool) -> int | None:
        self._refresh_bad()

        def choose(taken: set[int], answered: set[int]) -> int | None:
            with self._lock:
                self._answered = answered
                candidates = [i for i in self._order if i not in taken and i not in self._bad
                              and (include_answered or i not in answered)]
                return self._pick(candidates) if candidates else None

        return self.store.lease_image(session, choose, lease_seconds=self.lease_seconds)

    def renew(self, session: str) -> bool:
        """Keep the image of ``session`` leased (its page is open); True if it holds one."""
        return self.store.renew_lease(session, lease_seconds=self.lease_seconds)

    def _refresh_bad(self) -> None:
        """Images another process found unreadable are skipped here too."""
        found = self.store.bad_image_errors()
        with self._lock:
            self._bad.update((i, error) for i, error in found.items() if i in self._keys)

    def _pick(self, candidates: list[int]) -> int:
        if self.ordering != "uncertainty":
            return candidates[0]
        pool = candidates[: self.pool_size]
        version = self.suggester.version
        scored = [(uncertainty(self._cache[i].suggestions), -n, i) for n, i in enumerate(pool)
                  if i in self._cache and self._cache[i].model_version == version]
        return max(scored)[2] if scored else pool[0]

    def upcoming(self) -> list[int]:
        """The pool the uncertainty ordering chooses from (for the prefetcher)."""
        taken = {lease.image_id for lease in self.store.leases()}
        with self._lock:
            return [i for i in self._order if i not in taken and i not in self._bad
                    and i not in self._answered][: self.pool_size]

    # -- preparing ------------------------------------------------------------------------
    def prepare(self, image_id: int) -> PreparedTask | None:
        """Decode image ``image_id`` and predict on it with the current version (cached per
        version); None (and the error recorded) when the image cannot be read."""
        from objdet.inference.inputs import decode_image_bytes

        cached = self._cache.get(image_id)
        if cached is not None and cached.model_version == self.suggester.version:
            return cached
        key = self._keys.get(image_id)
        if key is None:
            return None
        try:
            image = self.source.read(key)
            pixels = decode_image_bytes(image.encoded, self.source.path_of(key))
        except (DataError, ObjdetError) as error:
            self.mark_bad(image_id, str(error))
            return None
        height, width = int(pixels.shape[1]), int(pixels.shape[2])
        row = self.store.image(image_id)
        if row is not None and (row.width, row.height) != (width, height):
            self.store.set_image_size(image_id, width, height)
        version, suggestions = self.suggester.predict(pixels)
        task = PreparedTask(image_id, key, width, height, version, suggestions)
        self._cache[image_id] = task
        return task

    def mark_bad(self, image_id: int, error: str) -> None:
        logger.warning("annotate: skipping a bad image: %s", error)
        self.store.set_image_error(image_id, error)
        with self._lock:
            self._bad[image_id] = error

    # -- answers --------------------------------------------------------------------------
    def answered(self, image_id: int) -> None:
        """``image_id`` was answered (the store released its lease in the same commit)."""
        with self._lock:
            self._answered.add(image_id)
            self._cache.pop(image_id, None)

    def has_image(self, image_id: int) -> bool:
        return image_id in self._keys

    def key_of(self, image_id: int) -> str:
        return self._keys[image_id]

    @property
    def bad_images(self) -> dict[int, str]:
        return dict(self._bad)

    # -- prefetching ----------------------------------------------------------------------
    def start_prefetch(self, interval: float = 0.05) -> None:
        if self.ordering != "uncertainty":
            return
        threading.Thread(target=self._prefetch_loop, args=(interval,), name="annotate-prefetch",
                         daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _prefetch_loop(self, interval: float) -> None:
        try:  # Linux schedules threads on their own: this one yields to the request handlers
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while not self._stop.wait(interval):
            version = self.suggester.version
            missing = [i for i in self.upcoming()
                       if not (i in self._cache and self._cache[i].model_version == version)]
            if not missing:
                self._stop.wait(0.5)
                continue
            try:
                self.prepare(missing[0])
            except Exception:
                logger.exception("annotate: prefetch")

"""``ModelManager``: which versions of which models serve, kept in step with the disk.

Every ``poll_seconds`` each model's ``base_path`` is listed: numeric subdirectories are
versions (others are ignored). The version policy picks the versions to serve among those
that have not failed; a new one is loaded, warmed up and verified (``load_servable``) while
the current ones keep serving, and only then swapped in and the versions no longer wanted
unloaded (references dropped, garbage collected). A version that fails to load is recorded
with its error (``END`` with error_code/error_message in the status) and is not retried
until its files change (a copy that was still in progress), so a half-written or broken
version never serves and never displaces a working one.

``reload`` replaces the served model list at run time (ModelService.HandleReloadConfigRequest),
as TF Serving's ``ServerCore::ReloadConfig`` does: see its docstring.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from objdet.errors import ObjdetError
from objdet.serving.batching import Batcher
from objdet.serving.config_reload import ModelServerConfig, checked_model_configs
from objdet.serving.errors import Code, ServingError, invalid_argument, not_found, unavailable
from objdet.serving.model_config import (
    BATCHING_PARAMS_FILE,
    BatchingOptions,
    ModelConfig,
    read_batching_parameters,
    versions_to_serve,
)
from objdet.serving.servable import Servable, load_servable
from objdet.structures.detections import Detections

logger = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]  # (file, size, mtime_ns) of a version directory


@dataclass
class VersionStatus:
    """A version's state as ``GetModelStatus`` reports it (state names of ModelVersionStatus)."""

    version: int
    state: str = "START"  # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: int = Code.OK
    error_message: str = ""
    fingerprint: Fingerprint = ()


@dataclass
class LoadedVersion:
    servable: Servable
    batcher: Batcher | None

    def predict(self, images: list) -> list[Detections]:  # type: ignore[type-arg]
        return self.batcher.predict(images) if self.batcher else self.servable.predict(images)

    def unload(self) -> None:
        """Finish the queued batches; the caller drops its reference and collects garbage
        (requests still holding this version finish with it: see ``Servable``)."""
        if self.batcher is not None:
            self.batcher.close()


@dataclass
class _Model:
    config: ModelConfig
    loaded: dict[int, LoadedVersion] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)


class ModelManager:
    """The served models; ``resolve`` picks the version a request is for."""

    def __init__(self, configs: list[ModelConfig], *, poll_seconds: float = 1.0,
                 batching: BatchingOptions | None = None,
                 loader: Callable[[Path, int], Servable] = load_servable,
                 on_batch: Callable[[str, int], None] | None = None,
                 max_load_retries: int = 0, load_retry_seconds: float = 60.0,
                 allow_labels_for_unavailable_versions: bool = False,
                 per_model_batching: bool = False) -> None:
        """``on_batch(model name, images)`` is called after each batched model call; a
        version that fails to load is tried again ``max_load_retries`` times,
        ``load_retry_seconds`` apart (TF Serving's --max_num_load_retries and
        --load_retry_interval_micros); ``poll_seconds`` 0 polls once, at ``start``. With
        ``batching`` and ``per_model_batching`` (--enable_per_model_batching_parameters) a
        version is batched as its own ``batching_params.pbtxt`` says (``batching_for``)."""
        self._models = {config.name: _Model(config) for config in configs}
        self.poll_seconds = poll_seconds
        self.max_load_retries = max_load_retries
        self.load_retry_seconds = load_retry_seconds
        self.allow_labels_for_unavailable_versions = allow_labels_for_unavailable_versions
        self.batching = batching
        self.per_model_batching = per_model_batching
        self.on_poll: Callable[[], None] | None = None  # after every poll (the gRPC health)
        self._loader = loader
        self._on_batch = on_batch
        self._lock = threading.Lock()  # guards _Model.loaded swaps (reads copy under it)
        # one poll or reload at a time; requests read self._models, replaced whole by a reload
        self._config_lock = threading.RLock()
        self._retired: dict[str, _Model] = {}  # reloaded away: their status stays (END)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- requests ------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return list(self._models)

    def resolve(self, name: str, version: int | None = None, label: str | None = None,
                ) -> LoadedVersion:
        """The loaded version a request names (the highest when neither version nor label
        is given); NOT_FOUND / UNAVAILABLE ``ServingError`` otherwise."""
        model = self._model(name)
        version = _labelled_version(model, version, label)
        with self._lock:
            loaded = dict(model.loaded)
        if version is None:
            if not loaded:
                raise unavailable(f"Servable not found for request: Latest({name}): "
                                  "no version of the model is available yet")
            return loaded[max(loaded)]
        if version not in loaded:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return loaded[version]

    def statuses(self, name: str, version: int | None = None, label: str | None = None,
                 ) -> list[VersionStatus]:
        """Every known version's status (or the one version/label asked for), by version."""
        model = self._model(name, retired=True)
        version = _labelled_version(model, version, label)
        with self._lock:
            statuses = [VersionStatus(**vars(status)) for status in model.statuses.values()]
        if version is not None:
            statuses = [status for status in statuses if status.version == version]
            if not statuses:
                raise not_found(f"Could not find version {version} of model {name}")
        elif not statuses:
            raise not_found(f"Could not find any versions of model {name}")
        return sorted(statuses, key=lambda status: -status.version)

    def ready(self) -> bool:
        """Whether every model has a version serving."""
        with self._lock:
            return all(model.loaded for model in self._models.values())

    def _model(self, name: str, retired: bool = False) -> _Model:
        """The served model ``name`` (or, with ``retired``, one a reload removed)."""
        if not name:
            raise invalid_argument("Missing model name in request")
        model = self._models.get(name) or (self._retired.get(name) if retired else None)
        if model is None:
            raise not_found(f"Servable not found for request: Latest({name})")
        return model

    # -- polling -------------------------------------------------------------------------
    def start(self) -> None:
        """Load what is on disk now (returns when done), then poll in a daemon thread."""
        self.poll_once()
        if self.poll_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and unload every version (queued batches finish first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for model in self._models.values():
            with self._lock:
                loaded, model.loaded = model.loaded, {}
            for version in loaded.values():
                version.unload()
        release_memory()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:
                logger.exception("version poll failed")

    def poll_once(self) -> None:
        with self._config_lock:
            for model in list(self._models.values()):
                self._poll_model(model)
            if self.on_poll is not None:
                self.on_poll()

    def batching_for(self, directory: Path) -> BatchingOptions | None:
        """How the version in ``directory`` is batched (None: not batched). With
        per-model batching, as TF Serving's ``GetPerModelBatchingParams``: the version's
        ``batching_params.pbtxt`` if it has one (``ConfigError`` naming it if it does not
        parse: the version fails to load), else no batching (the global file's values are
        ignored, but for num_batch_threads: TF Serving's batch threads are shared by all
        models and sized by the global config only)."""
        if self.batching is None or not self.per_model_batching:
            return self.batching
        path = directory / BATCHING_PARAMS_FILE
        if not path.is_file():
            return None
        options = read_batching_parameters(path)
        return dataclasses.replace(options, num_batch_threads=self.batching.num_batch_threads)

    # -- reload --------------------------------------------------------------------------
    def reload(self, config: ModelServerConfig) -> None:
        """Serve the models of ``config`` instead (TF Serving's ``ServerCore::ReloadConfig``):
        a model no longer listed is unloaded (its status stays, every version END), a new one
        is loaded before this returns, one listed before takes its new base_path, version
        policy and labels at once; the others keep serving throughout. A config TF Serving
        refuses raises its ``ServingError`` and changes nothing (see ``config_reload``); a new
        model with no version available afterwards raises UNKNOWN ``N model(s) did not become
        available: {...}`` (the rest of the reload stands, as in TF Serving)."""
        with self._config_lock:
            current = self._models
            with self._lock:
                available = {name: set(model.loaded) for name, model in current.items()}
            configs = checked_model_configs(
                config, {name: model.config for name, model in current.items()}, available,
                allow_labels_for_unavailable_versions=self.allow_labels_for_unavailable_versions)
            models = {}
            for model_config in configs:
                model = current.get(model_config.name) or _Model(model_config)
                model.config = model_config
                models[model_config.name] = model
            self._models = models
            for name, model in current.items():
                if name not in models:
                    self._retire(model)
            for name in models:
                self._retired.pop(name, None)
            self.poll_once()
            added = [model for name, model in models.items() if name not in current]
            failed = sorted((model for model in added if not model.loaded),
                            key=lambda model: model.config.name)  # TF Serving's: by name
            if failed:
                raise ServingError(Code.UNKNOWN, f"{len(failed)} model(s) did not become "
                                   f"available: {{{''.join(map(_unavailable, failed))}}}")

    def _retire(self, model: _Model) -> None:
        with self._lock:
            serving = sorted(model.loaded)
        for version in serving:
            self._unload(model, version)
        self._retired[model.config.name] = model
        logger.info("%s removed from the served models", model.config.name)

    def _poll_model(self, model: _Model) -> None:
        base = Path(model.config.base_path)
        on_disk = _version_directories(base)
        candidates = []
        for version, directory in on_disk.items():
            status = model.statuses.get(version)
            failed = status is not None and status.error_code != Code.OK
            if failed and status is not None and status.fingerprint == _fingerprint(directory):
                continue  # the same broken files: not retried
            candidates.append(version)
        wanted = set(versions_to_serve(model.config.model_version_policy, candidates))
        for version in sorted(wanted - set(model.loaded)):
            self._load(model, version, on_disk[version])
        with self._lock:
            serving = set(model.loaded)
        keep = wanted & serving
        if not keep:  # nothing wanted could load (or was deleted): what serves goes on serving
            return
        for version in sorted(serving - keep):
            self._unload(model, version)

    def _load(self, model: _Model, version: int, directory: Path) -> None:
        fingerprint = _fingerprint(directory)
        status = VersionStatus(version, "LOADING", fingerprint=fingerprint)
        with self._lock:
            model.statuses[version] = status
        for attempt in range(self.max_load_retries + 1):
            try:
                batching = self.batching_for(directory)
                servable = self._loader(directory, version)
                break
            except (ObjdetError, OSError, RuntimeError, ValueError) as error:
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                logger.error("%s version %d failed to load: %s", model.config.name, version,
                             message)
                if attempt < self.max_load_retries and not self._stop.wait(self.load_retry_seconds):
                    fingerprint = _fingerprint(directory)  # the files the retry reads
                    continue
                with self._lock:
                    model.statuses[version] = VersionStatus(version, "END", Code.UNKNOWN,
                                                            message, fingerprint)
                return
        batcher = None
        if batching is not None and servable.batched:
            on_batch = self._on_batch
            name = model.config.name
            batcher = Batcher(servable, batching,
                              None if on_batch is None else lambda images: on_batch(name, images))
        with self._lock:
            model.loaded[version] = LoadedVersion(servable, batcher)
            model.statuses[version] = VersionStatus(version, "AVAILABLE", fingerprint=fingerprint)
        logger.info("%s version %d is serving (%s)", model.config.name, version, directory)

    def _unload(self, model: _Model, version: int) -> None:
        with self._lock:
            loaded = model.loaded.pop(version)
            model.statuses[version] = VersionStatus(version, "UNLOADING")
        loaded.unload()
        del loaded
        release_memory()
        with self._lock:
            model.statuses[version] = VersionStatus(version, "END")
        logger.info("%s version %d unloaded", model.config.name, version)


def _unavailable(model: _Model) -> str:
    """One entry of TF Serving's "did not become available" message: ``{{name: M version: V}
    due to error: CODE: message}, `` for the newest version that failed to load (TF Serving
    waits for a version that never appears; objdet says so instead)."""
    failed = [status for status in model.statuses.values() if status.error_code != Code.OK]
    if not failed:
        return (f"{{{{name: {model.config.name}}} due to error: NOT_FOUND: no version "
                f"directory under {model.config.base_path}}}, ")
    status = max(failed, key=lambda status: status.version)
    code = Code.Name(status.error_code)  # type: ignore[arg-type]
    return (f"{{{{name: {model.config.name} version: {status.version}}} due to error: {code}: "
            f"{status.error_message}}}, ")


def _labelled_version(model: _Model, version: int | None, label: str | None) -> int | None:
    """The version a request's label stands for (``version`` when it names none)."""
    if label is None:
        return version
    labels = dict(model.config.version_labels)
    if label not in labels:
        raise not_found(f"Unrecognized servable version label: {label}")
    return int(labels[label])


def release_memory() -> None:
    """Collect the unloaded model now (not at some later GC) and hand glibc's freed heap back
    to the system, so the process's memory falls after an unload instead of staying high."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused, not returned
        pass


def _version_directories(base: Path) -> dict[int, Path]:
    """Numeric subdirectories of ``base`` (hidden temporaries and other names ignored)."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return {}
    return {int(entry.name): Path(entry.path) for entry in entries
            if entry.name.isdigit() and entry.is_dir()}


def _fingerprint(directory: Path) -> Fingerprint:
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        return tuple((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                     for entry in entries if entry.is_file())
    except OSError:
        return ()

"""``run_annotate``: open a project, start the trainer process and serve the app.

    from objdet.annotate.server import AnnotateSettings, run_annotate
    run_annotate(AnnotateSettings(images="images/", label_map_path="label_map.pbtxt",
                                  pipeline_config_path="pipeline.config", model_dir="model"))

The store is ``<model_dir>/annotate/answers.sqlite`` unless ``database`` says otherwise;
restarting on the same model_dir resumes where the last run stopped.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objdet.annotate.app import Project, build_app
from objdet.annotate.sources import ImageSource
from objdet.annotate.store import AnswerStore
from objdet.annotate.suggestions import EXPORT_FOLDER, Suggester
from objdet.annotate.tasks import TaskQueue
from objdet.annotate.trainer import TRAIN_ON, TrainerSettings, start_trainer_process
from objdet.errors import ConfigError, ObjdetError

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class AnnotateSettings:
    images: str
    label_map_path: str
    pipeline_config_path: str
    model_dir: str
    eval_input: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    database: str | None = None
    ordering: str = "uncertainty"
    seed: int = 0
    train: bool = True  # run the background trainer
    every_n_answers: int = 10
    every_seconds: float = 300.0
    steps_per_round: int = 100
    train_on: str = "all"
    trainer_threads: int | None = None
    min_score: float = 0.05
    poll_seconds: float = 1.0
    lease_seconds: float = 300.0  # an image shown and not answered is held this long
    initial_model: str | None = None  # suggestions before the first version (initial_model.py)
    initial_labels: str | None = None  # its classes -> the project's labels (FROM=TO,...)


def database_path(settings: AnnotateSettings) -> Path:
    return Path(settings.database or Path(settings.model_dir) / "annotate" / "answers.sqlite")


def check_settings(settings: AnnotateSettings) -> None:
    """One-line errors for bad flags, before anything starts."""
    for flag, path in (("--label_map_path", settings.label_map_path),
                       ("--pipeline_config_path", settings.pipeline_config_path)):
        if not Path(path).is_file():
            raise ConfigError(f"{flag}: {path} does not exist")
    if settings.eval_input is not None and not Path(settings.eval_input).exists():
        raise ConfigError(f"--eval_input: {settings.eval_input} does not exist")
    if settings.train_on not in TRAIN_ON:
        raise ConfigError(f"--train_on: {settings.train_on!r}; expected one of {', '.join(TRAIN_ON)}")
    if not settings.lease_seconds > 0:
        raise ConfigError(f"--lease_seconds: {settings.lease_seconds}; expected a positive number")
    if settings.every_n_answers < 1 or settings.steps_per_round < 1:
        raise ConfigError("--retrain_every_n and --steps_per_round must be at least 1")
    if not _is_loopback(settings.host) and not settings.token:
        raise ConfigError(f"--host {settings.host}: listening beyond this machine needs --token "
                          "(or $OBJDET_ANNOTATE_TOKEN)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_project(settings: AnnotateSettings) -> Project:
    """The store (created or resumed), the images, the label map, suggestions and tasks."""
    from objdet.structures.label_map import load_label_map

    check_settings(settings)
    label_map = load_label_map(settings.label_map_path)
    source = ImageSource(settings.images)
    store = AnswerStore(database_path(settings))
    known = store.get_meta("images")
    if known is not None and known != os.path.abspath(settings.images):
        logger.warning("annotate: this store was started on --images %s, now %s", known, settings.images)
    store.set_meta("images", os.path.abspath(settings.images))
    store.set_meta("label_map_path", os.path.abspath(settings.label_map_path))
    store.sync_images(source.keys)
    initial = None
    if settings.initial_model:
        from objdet.annotate.initial_model import load_initial_model

        initial = load_initial_model(settings.initial_model, label_map, settings.initial_labels)
        store.set_meta("initial_model", settings.initial_model)  # who made version 0's suggestions
    elif settings.initial_labels:
        raise ConfigError("--initial_labels: needs --initial_model")
    suggester = Suggester(Path(settings.model_dir) / EXPORT_FOLDER, min_score=settings.min_score,
                          poll_seconds=settings.poll_seconds, initial=initial)
    queue = TaskQueue(store, source, suggester, ordering=settings.ordering, seed=settings.seed,
                      lease_seconds=settings.lease_seconds)
    return Project(store=store, source=source, label_map=label_map, suggester=suggester,
                   queue=queue, token=settings.token, eval_input=settings.eval_input,
                   allowed_hosts=(*LOOPBACK_NAMES, settings.host) if _is_loopback(settings.host) else ())


def trainer_settings(settings: AnnotateSettings) -> TrainerSettings:
    return TrainerSettings(
        database=os.fspath(database_path(settings)), images=settings.images,
        label_map_path=settings.label_map_path, pipeline_config_path=settings.pipeline_config_path,
        model_dir=settings.model_dir, eval_input=settings.eval_input,
        every_n_answers=settings.every_n_answers, every_seconds=settings.every_seconds,
        steps_per_round=settings.steps_per_round, train_on=settings.train_on,
        threads=settings.trainer_threads, seed=settings.seed, initial_model=settings.initial_model,
        initial_labels=settings.initial_labels,
    )


def _serve_until_signal(server: Any, settings: AnnotateSettings) -> None:
    """uvicorn in a thread, the signals here (as ``objdet serve``): SIGTERM and SIGINT stop it
    gracefully and the process exits 0."""
    import signal
    import threading

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.run, name="annotate-http", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise ObjdetError(f"--port {settings.port}: cannot listen on {settings.host} (port in use?)")
            thread.join(0.02)
        while not stop.wait(0.5) and thread.is_alive():
            pass
    finally:
        server.should_exit = True
        thread.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_annotate(settings: AnnotateSettings) -> int:
    """Serve until interrupted; the trainer process stops with the app."""
    import uvicorn

    project = open_project(settings)
    Path(settings.model_dir).mkdir(parents=True, exist_ok=True)
    import objdet.inference.inputs  # noqa: F401  (torch and the decoders now, not in the first request)
    trainer: Any = None
    stop: Any = None
    if settings.train:
        trainer, stop = start_trainer_process(trainer_settings(settings))
    project.suggester.start()
    project.queue.start_prefetch()
    url = f"http://{settings.host}:{settings.port}/" + (f"?token={settings.token}" if settings.token else "")
    print(f"objdet annotate: {len(project.source)} images, {project.store.counts()['answered']} "
          f"answered; open {url}", flush=True)
    server = uvicorn.Server(uvicorn.Config(build_app(project), host=settings.host, port=settings.port,
                                           log_level="warning", access_log=False, lifespan="off"))
    try:
        _serve_until_signal(server, settings)
    finally:
        project.queue.stop()
        project.suggester.stop()
        if trainer is not None:
            stop.set()
            trainer.join(timeout=5)
            if trainer.is_alive():
                trainer.terminate()
        project.store.close()
    return 0

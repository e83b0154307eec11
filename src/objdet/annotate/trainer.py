"""The background trainer: fine-tunes the project's model on the answers, exports versions.

It runs in its own process at a lower priority (``os.nice``) so the page stays fast. Every
``every_n_answers`` new accepted answers, or every ``every_seconds`` when at least one is new,
a *round*:

1. writes the accepted answers (each image's newest answer; all of them, or with
   ``train_on="last_batch"`` only those since the previous round, the Prodigy recipe's way)
   to ``<model_dir>/annotate/train.record`` as ``objdet convert`` would;
2. trains ``steps_per_round`` more steps with ``objdet.engine.training.train`` on the
   pipeline config, its input pointed at that record, from ``starting_point``: the first
   round fine-tunes from the ``--initial_model``'s weights (type ``detection``: every tensor
   whose name and shape match, the class layers' rows first remapped onto the project's
   labels as ``--initial_labels`` or the names map them: ``class_heads``) when its
   architecture is the config's, else from the config's ``fine_tune_checkpoint`` (a zoo or
   imported checkpoint) or from scratch; later ones resume from the latest checkpoint of
   ``model_dir``; the config's augmentations apply; rejected and ignored images are not
   used, and a rejected suggestion is never a positive;
3. evaluates on ``eval_input`` when given (AP@0.5);
4. exports the checkpoint as ``<model_dir>/export/<next version>/``, which the app's
   ``Suggester`` picks up without a restart.

Its state goes to the store's ``meta`` table under ``"trainer"`` (read by ``/api/status``),
``started_from`` saying where the model's training started (the first round's
``StartingPoint``; announced before it, in one line, when the trainer starts).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objdet.annotate.sources import ImageSource
from objdet.annotate.store import Answer, AnswerStore
from objdet.annotate.suggestions import EXPORT_FOLDER
from objdet.errors import ObjdetError

if TYPE_CHECKING:
    from objdet.annotate.class_heads import RemappedWeights
    from objdet.engine.training import TrainResult

logger = logging.getLogger(__name__)

TRAIN_ON = ("all", "last_batch")
STATUS_KEY = "trainer"


@dataclass
class TrainerSettings:
    database: str
    images: str
    label_map_path: str
    pipeline_config_path: str
    model_dir: str
    eval_input: str | None = None
    every_n_answers: int = 10
    every_seconds: float = 300.0
    steps_per_round: int = 100
    train_on: str = "all"
    keep_versions: int = 3
    nice: int = 10
    threads: int | None = None  # torch threads; None: all cores but one
    seed: int = 0
    device: str | None = None
    initial_model: str | None = None  # the app's --initial_model: the first round starts from it
    initial_labels: str | None = None  # the app's --initial_labels: its classes -> the project's labels


@dataclass(frozen=True)
class StartingPoint:
    """Where a round's training starts."""

    source: str  # "checkpoint" (model_dir's latest), "initial_model", "fine_tune_checkpoint", "scratch"
    checkpoint: str | None = None
    note: str | None = None  # why the --initial_model's weights are not the start (one line)

    def describe(self) -> str:
        return self.source.replace("_", " ") + (f" {self.checkpoint}" if self.checkpoint else "")


@dataclass
class RoundResult:
    version: int
    step: int
    loss: float | None
    ap50: float | None
    trained_on: int
    last_answer_id: int
    seconds: float
    started_from: dict[str, str | None]  # asdict(StartingPoint) of this round


class _LossHook:
    """Keeps the mean total loss of the round's last steps; aborts when the app is gone."""

    def __init__(self, parent_pid: int | None) -> None:
        self.losses: list[float] = []
        self.parent_pid = parent_pid

    def before_train(self, trainer: Any) -> None: ...

    def after_step(self, trainer: Any, losses: dict[str, float]) -> None:
        self.losses = (self.losses + [float(losses["Loss/total_loss"])])[-10:]
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise SystemExit("annotate trainer: the app exited")

    def after_train(self, trainer: Any) -> None: ...

    @property
    def loss(self) -> float | None:
        return sum(self.losses) / len(self.losses) if self.losses else None


def training_config(settings: TrainerSettings, record_path: Path) -> Any:
    """The pipeline config with its train input at ``record_path`` and its eval input at
    ``settings.eval_input`` (no evaluation without one)."""
    import objdet.config

    config = objdet.config.load(settings.pipeline_config_path)
    reader = config.train_input_reader
    reader.tf_record_input_reader.ClearField("input_path")
    reader.tf_record_input_reader.input_path.append(os.fspath(record_path))
    reader.label_map_path = os.fspath(settings.label_map_path)
    template = config.eval_input_reader[0] if len(config.eval_input_reader) else None
    shuffle = template.shuffle if template is not None else False
    del config.eval_input_reader[:]
    if settings.eval_input:
        eval_reader = config.eval_input_reader.add()
        eval_reader.tf_record_input_reader.input_path.append(settings.eval_input)
        eval_reader.label_map_path = os.fspath(settings.label_map_path)
        eval_reader.shuffle = shuffle
    return config


def latest_step(model_dir: Path) -> int:
    from objdet.engine.checkpoint import CheckpointManager

    latest = CheckpointManager(model_dir).latest_path()
    if latest is None:
        return 0
    return int(latest.stem.split("-")[-1])


def starting_point(settings: TrainerSettings, config: Any) -> StartingPoint:
    """Where the next round of ``settings.model_dir`` starts training ``config`` (see the
    module docstring); a ``note`` says why the ``--initial_model`` is not where it starts."""
    from objdet.annotate.initial_model import initial_weights, model_architecture
    from objdet.engine.checkpoint import CheckpointManager
    from objdet.engine.train_config import build_train_settings

    latest = CheckpointManager(settings.model_dir).latest_path()
    if latest is not None:
        return StartingPoint("checkpoint", os.fspath(latest))
    fine_tune = build_train_settings(config.train_config).fine_tune
    own = StartingPoint("fine_tune_checkpoint", fine_tune.checkpoint) if fine_tune else StartingPoint("scratch")
    if settings.initial_model is None:
        return own
    try:
        initial = initial_weights(settings.initial_model)
    except ObjdetError as error:
        return replace(own, note=f"{error}; the first round starts from {own.describe()}")
    architecture = model_architecture(config.model)
    if initial.architecture != architecture:
        return replace(own, note=f"--initial_model {settings.initial_model} is {initial.architecture}, "
                                 f"--pipeline_config_path {settings.pipeline_config_path} is {architecture}: "
                                 f"the first round starts from {own.describe()}")
    return StartingPoint("initial_model", os.fspath(initial.weights_path))


def start_from(config: Any, start: StartingPoint, settings: TrainerSettings) -> Any:
    """``config`` fine-tuning from the ``--initial_model``'s weights when ``start`` says so,
    through the engine's own ``fine_tune_checkpoint`` (type ``detection``), their class rows
    remapped onto the project's labels (``remapped_initial_weights``); else as it is."""
    if start.source == "initial_model" and start.checkpoint:
        config.train_config.fine_tune_checkpoint = os.fspath(remapped_initial_weights(settings, config).path)
        config.train_config.fine_tune_checkpoint_type = "detection"
    return config


def remapped_initial_weights(settings: TrainerSettings, config: Any) -> RemappedWeights:
    """The ``--initial_model``'s weights with each class layer's rows where the project's
    labels are (``objdet.annotate.class_heads``), in ``<model_dir>/annotate/initial_weights.pt``;
    labels no class of the model maps onto start from the config's initializer."""
    import torch

    from objdet.annotate.class_heads import write_remapped_weights
    from objdet.annotate.initial_model import class_mapping, initial_weights, model_class_names
    from objdet.models import build_model
    from objdet.structures.label_map import load_label_map

    assert settings.initial_model is not None
    initial = initial_weights(settings.initial_model)
    label_map = load_label_map(settings.label_map_path)
    class_map = class_mapping(model_class_names(initial.label_map, label_map), label_map,
                              settings.initial_labels, settings.initial_model)
    with torch.random.fork_rng():  # the fresh rows: the config's initializer, seeded
        torch.manual_seed(settings.seed)
        model = build_model(config.model)
    weights = write_remapped_weights(model, initial.weights_path, class_map, initial.num_classes,
                                     Path(settings.model_dir) / "annotate" / "initial_weights.pt")
    logger.info("the class layers of --initial_model %s: %d remapped onto the labels (model class -> label %s), "
                "%d fresh", settings.initial_model, len(weights.remapped), class_map, len(weights.fresh))
    return weights


def answers_for_round(accepted: list[Answer], train_on: str, since_answer_id: int) -> list[Answer]:
    """The accepted answers a round trains on: all (``train_on="all"``), or those newer than
    ``since_answer_id`` (``"last_batch"``; the newest one when none is)."""
    if train_on == "all":
        return accepted
    if train_on != "last_batch":
        raise ObjdetError(f"train_on: {train_on!r}; expected one of {', '.join(TRAIN_ON)}")
    return [answer for answer in accepted if answer.id > since_answer_id] or accepted[-1:]


def run_round(settings: TrainerSettings, store: AnswerStore, source: ImageSource,
              since_answer_id: int = 0, parent_pid: int | None = None) -> RoundResult | None:
    """One training round (see the module docstring); None when there is nothing to train on."""
    from objdet.annotate.exports import accepted_samples
    from objdet.data.formats import convert_to_tfrecord
    from objdet.export.exporter import export_inference_graph, export_versions
    from objdet.structures.label_map import load_label_map

    start_time = time.perf_counter()
    model_dir = Path(settings.model_dir)
    label_map = load_label_map(settings.label_map_path)
    answers = store.answers(answer="accept")
    if not answers:
        return None
    last_answer_id = max(answer.id for answer in answers)
    answers = answers_for_round(answers, settings.train_on, since_answer_id)
    accepted = accepted_samples(store, source, label_map, answers)
    if not accepted.samples:
        return None
    record = model_dir / "annotate" / "train.record"
    record.parent.mkdir(parents=True, exist_ok=True)
    convert_to_tfrecord(accepted.samples, record, num_shards=1)
    hook = _LossHook(parent_pid)
    result, start = train_round(settings, record, hook)
    ap50 = _ap50(result.eval_history[-1][1]) if result.eval_history else None
    export_base = model_dir / EXPORT_FOLDER
    exported = export_inference_graph(pipeline_config_path=model_dir / "pipeline.config",
                                      trained_checkpoint_dir=model_dir, output_directory=export_base,
                                      version="next", formats=("pt2",))
    version = int(exported.directory.name)
    for old in sorted(export_versions(export_base))[: -settings.keep_versions]:
        shutil.rmtree(export_base / str(old), ignore_errors=True)
    return RoundResult(version=version, step=result.step, loss=hook.loss, ap50=ap50,
                       trained_on=len(accepted.samples), last_answer_id=last_answer_id,
                       seconds=time.perf_counter() - start_time, started_from=asdict(start))


def train_round(settings: TrainerSettings, record: Path, hook: _LossHook | None = None,
                ) -> tuple[TrainResult, StartingPoint]:
    """Train ``settings.steps_per_round`` more steps on ``record`` from ``starting_point``."""
    from objdet.engine.training import TrainOptions, train

    steps = latest_step(Path(settings.model_dir)) + settings.steps_per_round
    config = training_config(settings, record)
    start = starting_point(settings, config)
    result = train(start_from(config, start, settings), settings.model_dir, TrainOptions(
        num_train_steps=steps, checkpoint_every_n=settings.steps_per_round, keep_checkpoints=2,
        num_workers=0, show_progress=False, seed=settings.seed + steps, device=settings.device,
        extra_hooks=[hook] if hook is not None else [],  # type: ignore[list-item]
    ), config_source=settings.pipeline_config_path)
    return result, start


def _ap50(metrics: dict[str, float]) -> float | None:
    for key in ("PascalBoxes_Precision/mAP@0.5IOU", "DetectionBoxes_Precision/mAP@.50IOU"):
        if key in metrics:
            return float(metrics[key])
    return next((float(v) for k, v in metrics.items() if "0.5IOU" in k or ".50IOU" in k), None)


def export_initial_model(settings: TrainerSettings) -> int | None:
    """Export version 1 before any round, so the first images get suggestions, when nothing
    is exported yet and there is a model to export: the latest checkpoint of ``model_dir``
    (a project started from a trained or imported model_dir), else a ``fine_tune_checkpoint``
    of type ``full`` (a zoo or imported detector with the project's classes; a ``detection``
    or ``classification`` checkpoint has no trained class head for these labels, so the
    first round comes first). Returns the version, or None."""
    import objdet.config
    from objdet.engine.checkpoint import CheckpointManager
    from objdet.export.exporter import export_inference_graph, export_versions

    model_dir = Path(settings.model_dir)
    export_base = model_dir / EXPORT_FOLDER
    if export_versions(export_base):
        return None
    config = training_config(settings, model_dir / "annotate" / "train.record")
    checkpoint_dir: Path | None = model_dir
    if CheckpointManager(model_dir).latest_path() is None:
        checkpoint_dir = _fine_tuned_start(config, model_dir / "annotate" / "initial")
    if checkpoint_dir is None:
        return None
    config_path = model_dir / "annotate" / "initial.config"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    objdet.config.save(config, config_path)
    exported = export_inference_graph(pipeline_config_path=config_path, trained_checkpoint_dir=checkpoint_dir,
                                      output_directory=export_base, version="next", formats=("pt2",))
    return int(exported.directory.name)


def _fine_tuned_start(config: Any, checkpoint_dir: Path) -> Path | None:
    """A checkpoint (step 0) of the model with the config's ``full`` fine_tune_checkpoint
    loaded, written to ``checkpoint_dir``; None without one."""
    from objdet.engine.checkpoint import CheckpointManager
    from objdet.engine.fine_tune import load_fine_tune_checkpoint
    from objdet.engine.train_config import build_train_settings
    from objdet.models import build_model

    fine_tune = build_train_settings(config.train_config).fine_tune
    if fine_tune is None or fine_tune.checkpoint_type != "full":
        return None
    model = build_model(config.model)
    load_fine_tune_checkpoint(model, fine_tune.checkpoint, fine_tune.checkpoint_type)
    CheckpointManager(checkpoint_dir, keep_last=1).save(0, {"model": model.state_dict(), "ema": None})
    return checkpoint_dir


def trainer_main(settings: TrainerSettings, stop: Any = None, parent_pid: int | None = None) -> None:
    """The trainer process: rounds whenever enough new answers arrived, until ``stop`` is set
    (a multiprocessing Event) or the parent process is gone."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C stops the app, which stops this process
    logging.basicConfig(level=logging.INFO, format="annotate trainer: %(message)s")
    try:
        os.nice(settings.nice)
    except OSError:
        pass
    torch.set_num_threads(settings.threads or max(1, (os.cpu_count() or 2) - 1))
    store = AnswerStore(settings.database)
    source = ImageSource(settings.images)
    status: dict[str, Any] = store.get_meta(STATUS_KEY) or {}
    status.update(state="starting", error=None, train_on=settings.train_on, pid=os.getpid())
    store.set_meta(STATUS_KEY, status)
    try:
        announce_start(settings, status)
    except ObjdetError as error:
        status.update(error=f"the starting point: {error}")
    try:
        version = export_initial_model(settings)
        if version is not None:
            status["version"] = version
    except ObjdetError as error:
        status.update(error=f"exporting the starting model: {error}")
    status.update(state="idle")
    store.set_meta(STATUS_KEY, status)
    last_round_time = time.monotonic()
    failed_at_answer = -1
    while not (stop is not None and stop.is_set()):
        if parent_pid is not None and os.getppid() != parent_pid:
            return
        new = [a for a in store.answers(answer="accept") if a.id > int(status.get("last_answer_id", 0))]
        due = len(new) >= settings.every_n_answers or (
            new and time.monotonic() - last_round_time >= settings.every_seconds)
        if not due or (new and new[-1].id == failed_at_answer):
            time.sleep(0.5)
            continue
        status.update(state="training", round_started_at=time.time())
        store.set_meta(STATUS_KEY, status)
        try:
            result = run_round(settings, store, source, int(status.get("last_answer_id", 0)), parent_pid)
        except Exception as error:
            logger.exception("round failed")
            failed_at_answer = new[-1].id
            status.update(state="error", error=f"{type(error).__name__}: {error}")
            store.set_meta(STATUS_KEY, status)
            continue
        last_round_time = time.monotonic()
        if result is not None:
            round_status = asdict(result)
            if result.started_from["source"] == "checkpoint":  # a later round: the origin stays
                del round_status["started_from"]
            status.update(round_status, rounds=int(status.get("rounds", 0)) + 1)
        status.update(state="idle", error=None, finished_at=time.time())
        store.set_meta(STATUS_KEY, status)


def announce_start(settings: TrainerSettings, status: dict[str, Any]) -> None:
    """Before the first round: say in one line where it starts, and record it in ``status``."""
    config = training_config(settings, Path(settings.model_dir) / "annotate" / "train.record")
    start = starting_point(settings, config)
    if start.source == "checkpoint":
        status.setdefault("started_from", asdict(start))
        return
    status["started_from"] = asdict(start)
    if start.note:
        logger.warning("%s", start.note)
    else:
        logger.info("the first round starts from %s", start.describe())


def start_trainer_process(settings: TrainerSettings) -> tuple[Any, Any]:
    """Start ``trainer_main`` in a spawned process; returns (process, stop event)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    process = context.Process(target=trainer_main, args=(settings, stop, os.getpid()),
                              name="objdet-annotate-trainer", daemon=True)
    process.start()
    return process, stop

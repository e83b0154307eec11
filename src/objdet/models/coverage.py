"""Which pipeline configs objdet can parse, build and train: ``objdet configs-report``.

    from objdet.models.coverage import config_report, find_configs
    for report in config_report(find_configs(["configs/"])):
        print(report.config, report.parse, report.build, report.train_step, report.error)

Each config goes through three stages, and stops at the first that fails:

1. parse: ``objdet.config.load`` (text proto, JSON or YAML);
2. build: ``objdet.models.build_model(pipeline.model)``; a failure is the builder's
   ``ConfigError`` naming the first unsupported field and its value;
3. train step: the trainer's wiring of ``train_config`` (``engine.training``: trainable
   variables, optimizer and schedule, L2 weight decay, bfloat16, moving average, gradient
   clipping and bias multipliers; the augmentation steps are built, not applied) and one
   ``Trainer.run_step`` on 1 random 64x64 image with 1-3 random boxes (labels in
   1..num_classes), which fails on a non-finite loss. The model's image_resizer resizes the
   images as in training, so a 1024x1024 fixed_shape_resizer steps at 1024x1024.

Only ``model`` and ``train_config`` are read: label maps, input paths and
fine_tune_checkpoint need not exist. One model lives at a time. ``ObjdetError`` messages are
reported as they are; any other exception as ``<type>: <message>``, so that one crashing
config does not stop a report. A train step over ``max_seconds`` is stopped (a timer signal,
in the main thread only; elsewhere there is no limit).
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from objdet.errors import ObjdetError

CONFIG_SUFFIX = ".config"
# One image: a step of EfficientDet D6/D7 at 1408-1536 px takes 13-16 GB on the CPU, and two
# images would not fit a 24 GB machine.
NUM_IMAGES = 1
IMAGE_SIZE = 64  # height and width of the random images, before the model's resizer
MAX_BOXES_PER_IMAGE = 3


@dataclass(frozen=True)
class ConfigReport:
    """How far one config got: ``error`` is the first failure's one-line message, or None."""

    config: str
    parse: bool
    build: bool
    train_step: bool
    error: str | None
    seconds: float  # wall time of all stages

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class TrainStepTimeout(ObjdetError):
    """The train step ran longer than the report's ``max_seconds``."""


def find_configs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every ``*.config`` file under the folders ``paths`` (recursively), sorted, each once;
    a path that is a file is taken as it is. ``ObjdetError`` for a path that does not exist."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found.update(p for p in path.rglob(f"*{CONFIG_SUFFIX}") if p.is_file())
        elif path.is_file():
            found.add(path)
        else:
            raise ObjdetError(f"{path}: no such folder")
    return sorted(found)


def config_report(
    paths: Sequence[str | os.PathLike[str]], *, max_seconds: float = 120.0, seed: int = 0,
) -> list[ConfigReport]:
    """Parse, build and train one step of each config file in ``paths``, in order."""
    return [report_one(path, max_seconds=max_seconds, seed=seed) for path in paths]


def report_one(path: str | os.PathLike[str], *, max_seconds: float = 120.0, seed: int = 0) -> ConfigReport:
    """The :class:`ConfigReport` of one config file (never raises for a bad config)."""
    from objdet import config as pipeline_config

    _import_torch_modules()  # once, before the clock starts: ``seconds`` is the config's own
    start = time.perf_counter()
    stages = {"parse": False, "build": False, "train_step": False}
    error: str | None = None
    try:
        config = pipeline_config.load(path)
        stages["parse"] = True
        _fill_keypoint_label_map(config.model)
        model = _build(config.model)
        stages["build"] = True
        with _time_limit(max_seconds):
            _train_one_step(model, config.train_config, seed)
        stages["train_step"] = True
    except Exception as exception:  # noqa: BLE001 - a report: every failure is one line
        error = describe_error(exception)
    finally:
        model = None  # free the model (and its optimizer state) before the next config
        gc.collect()
    return ConfigReport(config=os.fspath(path), **stages, error=error,
                        seconds=round(time.perf_counter() - start, 2))


def describe_error(exception: BaseException) -> str:
    """One line: an ``ObjdetError``'s message, otherwise ``<type>: <message>``."""
    text = str(exception) if isinstance(exception, ObjdetError) else (
        f"{type(exception).__name__}: {exception}"
    )
    return " ".join(text.split())


def _import_torch_modules() -> None:
    """Import what the stages use (a failure is reported by the stage that needs it)."""
    try:
        import objdet.engine.trainer
        import objdet.models.builder  # noqa: F401
    except Exception:  # noqa: BLE001, S110
        pass


def _build(model_config: Any) -> Any:
    import torch

    from objdet.models import build_model

    torch.manual_seed(0)
    return build_model(model_config)


def _train_one_step(model: Any, train_config: Any, seed: int) -> None:
    """One optimizer step wired as ``objdet.engine.training.train`` wires its Trainer."""
    import torch

    from objdet.data.augment_builder import build_augmentations
    from objdet.engine.ema import build_ema
    from objdet.engine.fine_tune import select_trainable
    from objdet.engine.gradients import bias_grad_multiplier
    from objdet.engine.mixed_precision import autocast_layers, bfloat16_available
    from objdet.engine.optim import build_optimizer
    from objdet.engine.train_config import build_train_settings
    from objdet.engine.trainer import Trainer
    from objdet.models.regularization import parameter_groups

    settings = build_train_settings(train_config)
    build_augmentations(settings.augmentation_steps)
    device = torch.device("cpu")
    select_trainable(model, settings.freeze_variables, settings.update_trainable_variables)
    setup = build_optimizer(
        settings.optimizer, parameter_groups(model, regularize=settings.add_regularization_loss)
    )
    if settings.use_bfloat16 and bfloat16_available(device):
        autocast_layers(model, device.type)
    ema = build_ema(model, setup.moving_average_decay) if setup.moving_average_decay else None
    trainer = Trainer(
        model=model, optimizer=setup.optimizer, scheduler=setup.scheduler, batches=iter(()),
        num_steps=1, ema=ema, gradient_clip_norm=settings.gradient_clipping_by_norm,
        device=device, gradient_multipliers=bias_grad_multiplier(model, settings.bias_grad_multiplier),
    )
    with_masks = getattr(model, "mask_head", None) is not None  # Mask R-CNN trains on masks
    images, targets = random_batch(int(model.num_classes), seed, with_masks)
    add_random_keypoints(targets, int(getattr(model, "num_keypoints", 0)), seed)
    trainer.run_step((images, targets))  # TrainingDiverged if not finite


def _fill_keypoint_label_map(model_config: Any) -> None:
    """The OD API's CenterNet keypoint configs leave ``keypoint_label_map_path`` as a
    placeholder: build them with the zoo's COCO keypoint label map."""
    from pathlib import Path

    from objdet.zoo.catalog import shipped_keypoint_label_map
    from objdet.zoo.convert import configure_keypoint_label_map

    configure_keypoint_label_map(model_config, Path(str(shipped_keypoint_label_map())))


def add_random_keypoints(targets: list[dict[str, Any]], num_keypoints: int, seed: int = 0
                         ) -> None:
    """Give each target ``keypoints [N, num_keypoints, 2]`` (x, y), uniform in its boxes
    (none when ``num_keypoints`` is 0)."""
    import torch

    if num_keypoints <= 0:
        return
    generator = torch.Generator().manual_seed(seed + 1)
    for target in targets:
        boxes = target["boxes"]  # [N, 4] x1 y1 x2 y2
        where = torch.rand(boxes.shape[0], num_keypoints, 2, generator=generator)
        target["keypoints"] = boxes[:, None, :2] + where * (boxes[:, None, 2:] - boxes[:, None, :2])


def random_batch(num_classes: int, seed: int = 0, with_masks: bool = False
                 ) -> tuple[list[Any], list[dict[str, Any]]]:
    """``NUM_IMAGES`` random ``[3, IMAGE_SIZE, IMAGE_SIZE]`` images in [0, 1], each with 1 to
    ``MAX_BOXES_PER_IMAGE`` random boxes ``[N, 4]`` (x1, y1, x2, y2 pixels, at least 4 pixels
    wide and high) labelled with ids in 1..num_classes; ``with_masks``: and instance masks
    ``[N, IMAGE_SIZE, IMAGE_SIZE]`` uint8, each its box filled."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(NUM_IMAGES):
        images.append(torch.rand(3, IMAGE_SIZE, IMAGE_SIZE, generator=generator))
        count = int(torch.randint(1, MAX_BOXES_PER_IMAGE + 1, (1,), generator=generator))
        corners = torch.rand(count, 2, generator=generator) * (IMAGE_SIZE - 4)  # [N, 2] x1, y1
        sizes = 4 + torch.rand(count, 2, generator=generator) * (IMAGE_SIZE - 4 - corners)  # [N, 2]
        boxes = torch.cat([corners, corners + sizes], dim=1)  # [N, 4]
        labels = torch.randint(1, num_classes + 1, (count,), generator=generator)
        targets.append({"boxes": boxes, "labels": labels})
        if with_masks:
            pixels = torch.arange(IMAGE_SIZE, dtype=torch.float32) + 0.5
            inside_x = (pixels >= boxes[:, 0:1]) & (pixels <= boxes[:, 2:3])  # [N, W]
            inside_y = (pixels >= boxes[:, 1:2]) & (pixels <= boxes[:, 3:4])  # [N, H]
            targets[-1]["masks"] = (inside_y[:, :, None] & inside_x[:, None, :]).to(torch.uint8)
    return images, targets


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise ``TrainStepTimeout`` in the block after ``seconds`` (between Python bytecodes,
    so a long native operation finishes first). No limit outside the main thread, where
    signals cannot be handled, or for ``seconds <= 0``."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TrainStepTimeout(f"train step: stopped after the time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

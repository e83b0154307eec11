"""``train``: everything ``objdet train`` does, wired from one pipeline config.

The pieces each read their own part of the config (models/builder.py, data/dataset.py,
engine/optim.py, evaluation/registry.py); this module only connects them: model, trainable
variables, optimizer, moving average, data, resume or fine-tune, hooks, DDP.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import objdet.config
from objdet.data.dataset import build_data_loader, build_dataset
from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.distributed import DistributedContext, init_distributed, per_rank_batch_size
from objdet.engine.ema import build_ema
from objdet.engine.evaluate import build_eval_inputs, evaluate_detector
from objdet.engine.fine_tune import load_fine_tune_checkpoint, select_trainable
from objdet.engine.hooks import CheckpointHook, EvalHook, Hook, ProgressHook
from objdet.engine.host_memory import retain_freed_memory
from objdet.engine.optim import build_optimizer
from objdet.engine.trainer import Batch, Trainer
from objdet.errors import ConfigError
from objdet.models import build_model
from objdet.models.regularization import parameter_groups

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    step: int
    model_dir: Path
    eval_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    best_checkpoint: str | None = None


@dataclass
class TrainOptions:
    """What the command line adds to the config (the OD API's model_main_tf2 flags)."""

    num_train_steps: int | None = None  # None: train_config.num_steps
    checkpoint_every_n: int = 1000
    eval_every_n: int = 0  # 0: evaluate only at the end (when an eval input is configured)
    keep_checkpoints: int = 5
    num_workers: int = 2
    seed: int = 0
    show_progress: bool = True
    log_every_n: int = 10
    device: str | None = None  # None: cuda if available, else cpu
    # keep freed host memory for reuse (objdet.engine.host_memory); None: when training on the CPU
    retain_freed_memory: bool | None = None
    extra_hooks: Sequence[Hook] = ()  # run after the built-in ones, on the main process


def default_device(context: DistributedContext) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", context.local_rank)
    return torch.device("cpu")


def train(config_or_path: Any, model_dir: str | os.PathLike[str], options: TrainOptions | None = None) -> TrainResult:
    """Train (or resume training of) the model a pipeline config describes, in ``model_dir``."""
    options = options or TrainOptions()
    if isinstance(config_or_path, (str, os.PathLike)):
        source, config = os.fspath(config_or_path), objdet.config.load(config_or_path)
    else:
        source, config = "<config>", config_or_path
    objdet.config.validate(config, source)
    context = init_distributed()
    model_dir = Path(model_dir)
    device = torch.device(options.device) if options.device else default_device(context)
    if options.retain_freed_memory or (options.retain_freed_memory is None and device.type == "cpu"):
        retain_freed_memory()
    torch.manual_seed(options.seed + context.rank)
    train_config = config.train_config
    num_steps = options.num_train_steps or train_config.num_steps
    if num_steps <= 0:
        raise ConfigError("train_config.num_steps is 0: set it or pass --num_train_steps")

    model = build_model(config.model).to(device)
    select_trainable(model, train_config.freeze_variables, train_config.update_trainable_variables)
    setup = build_optimizer(train_config.optimizer, parameter_groups(model))
    ema = build_ema(model, setup.moving_average_decay) if setup.moving_average_decay else None
    manager = CheckpointManager(model_dir, keep_last=options.keep_checkpoints)
    state = _resume_or_fine_tune(model, manager, train_config)
    if state is None and not train_config.fine_tune_checkpoint and context.is_main:
        warn_slow_batch_norm(model, num_steps)
    if context.is_main:
        model_dir.mkdir(parents=True, exist_ok=True)
        objdet.config.save(config, model_dir / "pipeline.config")

    trainer = Trainer(
        model=_maybe_distributed(model, context, device), optimizer=setup.optimizer,
        scheduler=setup.scheduler, batches=iter(()), num_steps=num_steps, ema=ema,
        gradient_clip_norm=train_config.gradient_clipping_by_norm, device=device,
    )
    if state is not None:
        trainer.load_state_dict(state)
        logger.info("resuming from step %d", trainer.step)
    trainer.batches = _train_batches(config, options, context, trainer.samples_seen,
                                     getattr(model, "image_resizer", None))
    eval_hook = _eval_hook(config, options, manager, model_dir, device) if context.is_main else None
    trainer.hooks = list(_hooks(options, manager, model_dir, context, eval_hook))
    trainer.train()
    return TrainResult(
        step=trainer.step, model_dir=model_dir,
        eval_history=eval_hook.history if eval_hook else [],
        best_checkpoint=manager.read_index().best,
    )


def _resume_or_fine_tune(model: nn.Module, manager: CheckpointManager, train_config: Any) -> dict[str, Any] | None:
    """The latest checkpoint's state when resuming; otherwise apply fine_tune_checkpoint."""
    latest = manager.latest_path()
    if latest is not None:
        return manager.load(latest)
    if train_config.fine_tune_checkpoint:
        checkpoint_type = train_config.fine_tune_checkpoint_type or (
            "detection" if train_config.from_detection_checkpoint else "classification"
        )
        report = load_fine_tune_checkpoint(model, train_config.fine_tune_checkpoint, checkpoint_type)
        logger.info("fine_tune_checkpoint %s (%s): %s", train_config.fine_tune_checkpoint,
                    checkpoint_type, report.summary())
    return None


def warn_slow_batch_norm(model: nn.Module, num_steps: int) -> list[str]:
    """Warn about batch norms whose moving averages cannot forget their initial values (mean
    0, variance 1) within ``num_steps`` from scratch; returns the layers named in the warning.

    E.g. MobileNet v1's base keeps a slow decay (0.999), made for a pretrained base,
    unless ``override_base_feature_extractor_hyperparams`` gives it the config's. Trained
    from scratch, such layers still hold over 1% of their initial statistics at the end, and
    in eval mode the stale variances shrink the signal layer after layer until every image
    gives the same detections.
    """
    slow = [
        name for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
        and module.momentum is not None and (1.0 - module.momentum) ** num_steps > 0.01
    ]
    if slow:
        logger.warning(
            "training from scratch for %d steps, but %d batch norm layers (e.g. %s) have a "
            "moving-average decay too slow to forget their initial statistics; evaluation will "
            "use stale statistics. Set override_base_feature_extractor_hyperparams: true (the "
            "config's batch_norm decay then applies to the base) or fine-tune from a checkpoint.",
            num_steps, len(slow), slow[0],
        )
    return slow


def _maybe_distributed(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    if not context.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _train_batches(config: Any, options: TrainOptions, context: DistributedContext, samples_seen: int,
                   image_resizer: Any) -> Iterator[Batch]:
    """Endless training batches, continuing after the ``samples_seen`` this rank consumed.

    The model's image resizer runs in the loader workers (as the OD API's input pipeline
    runs the model's preprocess), so the main process only trains.
    """
    dataset = build_dataset(
        config.train_input_reader, training=True,
        augmentation_steps=config.train_config.data_augmentation_options, seed=options.seed,
        image_resizer=image_resizer,
    )
    loader = build_data_loader(
        dataset, per_rank_batch_size(config.train_config.batch_size, context), options.num_workers,
        training=True, rank=context.rank, world_size=context.world_size, start_position=samples_seen,
    )
    return iter(loader)


def _eval_hook(config: Any, options: TrainOptions, manager: CheckpointManager, model_dir: Path,
               device: torch.device) -> EvalHook | None:
    """Interleaved evaluation on the first eval_input_reader, when there is one."""
    inputs = build_eval_inputs(config)
    if inputs is None:
        return None
    writer = _summary_writer(model_dir / "eval")
    num_images_to_draw = config.eval_config.num_visualizations

    def evaluate(current: Trainer) -> dict[str, float]:
        model = current.ema.module if current.ema is not None else current.model
        drawings = DetectionDrawings(num_images_to_draw, inputs.categories)
        metrics = evaluate_detector(model, inputs.loader, inputs.evaluators, device=device,
                                    max_images=inputs.max_images, on_prediction=drawings.add)
        drawings.write(writer, current.step)
        return metrics

    return EvalHook(evaluate, options.eval_every_n, manager=manager, writer=writer,
                    best_metric=primary_metric(config.eval_config))


class DetectionDrawings:
    """The first ``count`` eval images with their detections drawn, for TensorBoard."""

    def __init__(self, count: int, categories: Sequence[dict[str, Any]], min_score: float = 0.2) -> None:
        self.count = count
        self.category_index = {int(c["id"]): c for c in categories}
        self.min_score = min_score
        self.images: list[Any] = []

    def add(self, image_id: int, image: torch.Tensor, output: dict[str, torch.Tensor]) -> None:
        if image_id >= self.count:
            return
        from objdet.viz.draw import draw_detections

        self.images.append(draw_detections(image, output["boxes"], output["labels"], output["scores"],
                                           self.category_index, min_score=self.min_score))

    def write(self, writer: Any, step: int) -> None:
        import numpy as np

        for index, drawing in enumerate(self.images):
            writer.add_image(f"eval_side_by_side_{index}", np.asarray(drawing), step, dataformats="HWC")


def primary_metric(eval_config: Any) -> str:
    """The metric that ranks checkpoints: the headline mAP of the first metrics set."""
    first = eval_config.metrics_set[0] if eval_config.metrics_set else "coco_detection_metrics"
    if first.startswith("coco"):
        return "DetectionBoxes_Precision/mAP"
    if "pascal" in first:
        prefix = "WeightedPascalBoxes" if first.startswith("weighted") else "PascalBoxes"
        return f"{prefix}_Precision/mAP@0.5IOU"
    return "OpenImagesV2_Precision/mAP@0.5IOU"


def _hooks(options: TrainOptions, manager: CheckpointManager, model_dir: Path,
           context: DistributedContext, eval_hook: EvalHook | None) -> Sequence[Hook]:
    if not context.is_main:
        return []
    hooks: list[Hook] = [
        ProgressHook(_summary_writer(model_dir / "train"), options.log_every_n, options.show_progress),
        CheckpointHook(manager, options.checkpoint_every_n),
    ]
    if eval_hook is not None:
        hooks.append(eval_hook)
    return hooks + list(options.extra_hooks)


def _summary_writer(log_dir: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))

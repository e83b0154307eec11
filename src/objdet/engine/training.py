"""``train``: everything ``objdet train`` does, wired from one pipeline config.

The pieces each read their own part of the config (models/meta_arch/*_builder.py, data/dataset.py,
engine/train_config.py, engine/optim.py, evaluation/registry.py); this module only connects
them: model, trainable variables, optimizer, moving average, data, resume or fine-tune,
hooks, DDP. It reads ``config.train_config`` only through ``build_train_settings``.
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
from objdet.atomic import require_writable_directory
from objdet.data.dataset import build_data_loader, build_dataset
from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.devices import resolve_device
from objdet.engine.distributed import DistributedContext, init_distributed, per_rank_batch_size
from objdet.engine.ema import build_ema
from objdet.engine.eval_loop import write_metrics_json
from objdet.engine.evaluate import build_eval_inputs, evaluate_detector
from objdet.engine.fine_tune import load_fine_tune_checkpoint, select_trainable
from objdet.engine.gradients import bias_grad_multiplier
from objdet.engine.hooks import CheckpointHook, EvalHook, Hook, ProgressHook
from objdet.engine.host_memory import retain_freed_memory
from objdet.engine.mixed_precision import autocast_layers, bfloat16_available
from objdet.engine.optim import build_optimizer
from objdet.engine.train_config import FineTune, TrainSettings, build_train_settings
from objdet.engine.trainer import Batch, Trainer
from objdet.errors import ConfigError
from objdet.evaluation.base import DetectionEvaluator
from objdet.models import build_model
from objdet.models.contract import as_detection_model
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

    num_train_steps: int | None = None  # None: train_config.num_steps; else > 0
    checkpoint_every_n: int = 1000
    eval_every_n: int = 0  # 0: evaluate only at the end (when an eval input is configured)
    keep_checkpoints: int = 5
    num_workers: int = 2
    seed: int = 0
    show_progress: bool = True
    log_every_n: int = 10
    device: str | None = None  # "cpu", "cuda", "cuda:N"; None: cuda if available, else cpu
    # keep freed host memory for reuse (objdet.engine.host_memory); None: when training on the CPU
    retain_freed_memory: bool | None = None
    extra_hooks: Sequence[Hook] = ()  # run after the built-in ones, on the main process


def train(
    config_or_path: Any,
    model_dir: str | os.PathLike[str],
    options: TrainOptions | None = None,
    *,
    config_source: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train (or resume training of) the model a pipeline config describes, in ``model_dir``.

    ``config_or_path`` is a config file or a loaded ``TrainEvalPipelineConfig``;
    ``config_source`` names where a loaded one came from (e.g. its file, after overrides),
    for errors and warnings (default: the path, or ``<config>``). The config and its label
    maps are checked before anything is built.
    """
    options = options or TrainOptions()
    if isinstance(config_or_path, (str, os.PathLike)):
        source, config = os.fspath(config_or_path), objdet.config.load(config_or_path)
    else:
        source, config = "<config>", config_or_path
    if config_source is not None:
        source = os.fspath(config_source)
    for warning in objdet.config.validate(config, source, check_label_maps=True):
        logger.warning("%s", warning)
    settings = build_train_settings(config.train_config)
    num_steps = _num_steps(options, settings)
    context = init_distributed()
    model_dir = Path(model_dir)
    device = _checked_device(options, context, model_dir)
    use_bfloat16 = settings.use_bfloat16 and bfloat16_available(device)
    if options.retain_freed_memory or (options.retain_freed_memory is None and device.type == "cpu"):
        retain_freed_memory()
    torch.manual_seed(options.seed + context.rank)

    model = build_model(config.model).to(device)
    select_trainable(model, settings.freeze_variables, settings.update_trainable_variables)
    setup = build_optimizer(
        settings.optimizer, parameter_groups(model, regularize=settings.add_regularization_loss)
    )
    if use_bfloat16:
        autocast_layers(model, device.type)
    ema = build_ema(model, setup.moving_average_decay) if setup.moving_average_decay else None
    manager = CheckpointManager(model_dir, keep_last=options.keep_checkpoints)
    state = _resume_or_fine_tune(model, manager, settings.fine_tune)
    if state is None and settings.fine_tune is None and context.is_main:
        warn_slow_batch_norm(model, num_steps)
    if context.is_main:
        model_dir.mkdir(parents=True, exist_ok=True)
        objdet.config.save(config, model_dir / "pipeline.config")

    trainer = Trainer(
        model=_maybe_distributed(model, context, device), optimizer=setup.optimizer,
        scheduler=setup.scheduler, batches=iter(()), num_steps=num_steps, ema=ema,
        gradient_clip_norm=settings.gradient_clipping_by_norm, device=device,
        gradient_multipliers=bias_grad_multiplier(model, settings.bias_grad_multiplier),
    )
    if state is not None:
        trainer.load_state_dict(state)
        logger.info("resuming from step %d", trainer.step)
    trainer.batches = _train_batches(config, settings, options, context, trainer.samples_seen,
                                     as_detection_model(model).image_resizer)
    eval_hook = _eval_hook(config, options, manager, model_dir, device) if context.is_main else None
    trainer.hooks = list(_hooks(options, manager, model_dir, context, eval_hook))
    trainer.train()
    return TrainResult(
        step=trainer.step, model_dir=model_dir,
        eval_history=eval_hook.history if eval_hook else [],
        best_checkpoint=manager.read_index().best,
    )


def _checked_device(options: TrainOptions, context: DistributedContext, model_dir: Path) -> torch.device:
    """The training device. Everything about the machine (the device, a writable model_dir)
    is checked here, before the model is built."""
    device = resolve_device(options.device, context.local_rank)
    if context.is_main:
        require_writable_directory(model_dir, f"model_dir {model_dir}")
    return device


def _num_steps(options: TrainOptions, settings: TrainSettings) -> int:
    """--num_train_steps when given (it must be > 0), else train_config.num_steps; checks
    the other counts of ``options`` too."""
    if options.keep_checkpoints < 1:  # 0 would keep every checkpoint (a [-0:] slice)
        raise ConfigError(f"--keep_checkpoints: {options.keep_checkpoints}; expected at least 1")
    if options.num_train_steps is not None:
        if options.num_train_steps <= 0:
            raise ConfigError(
                f"--num_train_steps: {options.num_train_steps}; expected a number of steps > 0"
            )
        return options.num_train_steps
    if settings.num_steps <= 0:
        raise ConfigError("train_config.num_steps is 0: set it or pass --num_train_steps")
    return settings.num_steps


def _resume_or_fine_tune(model: nn.Module, manager: CheckpointManager, fine_tune: FineTune | None) -> dict[str, Any] | None:
    """The latest checkpoint's state when resuming; otherwise apply fine_tune_checkpoint."""
    latest = manager.latest_path()
    if latest is not None:
        return manager.load(latest)
    if fine_tune is not None:
        report = load_fine_tune_checkpoint(
            model, fine_tune.checkpoint, fine_tune.checkpoint_type,
            load_all_detection_checkpoint_vars=fine_tune.load_all_detection_checkpoint_vars)
        logger.info("fine_tune_checkpoint %s (%s): %s", fine_tune.checkpoint,
                    fine_tune.checkpoint_type, report.summary())
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


def _train_batches(config: Any, settings: TrainSettings, options: TrainOptions, context: DistributedContext,
                   samples_seen: int, image_resizer: Any) -> Iterator[Batch]:
    """Endless training batches, continuing after the ``samples_seen`` this rank consumed.

    The model's image resizer runs in the loader workers (as the OD API's input pipeline
    runs the model's preprocess), so the main process only trains.
    """
    dataset = build_dataset(
        config.train_input_reader, training=True,
        augmentation_steps=settings.augmentation_steps, seed=options.seed,
        image_resizer=image_resizer,
    )
    loader = build_data_loader(
        dataset, per_rank_batch_size(settings.batch_size, context), options.num_workers,
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
        write_metrics_json(model_dir / "eval", current.step, metrics)  # as `objdet eval` writes them
        return metrics

    return EvalHook(evaluate, options.eval_every_n, manager=manager, writer=writer,
                    best_metric=primary_metric(inputs.evaluators))


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
                                           self.category_index, min_score=self.min_score,
                                           masks=output.get("masks")))

    def write(self, writer: Any, step: int) -> None:
        import numpy as np

        for index, drawing in enumerate(self.images):
            writer.add_image(f"eval_side_by_side_{index}", np.asarray(drawing), step, dataformats="HWC")


def primary_metric(evaluators: Sequence[DetectionEvaluator]) -> str:
    """The metric that ranks checkpoints: the headline metric the first metrics set's
    evaluator declares. EvalHook ranks higher values as better, which every declared headline
    metric is (tests/evaluation/test_registry.py checks each registered metrics set)."""
    return evaluators[0].headline_metric.key


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

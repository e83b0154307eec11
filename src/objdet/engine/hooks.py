"""The hooks the trainer runs: progress and TensorBoard logging, checkpoints, evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.trainer import Hook, Trainer


class ProgressHook(Hook):
    """A tqdm bar with the total loss, learning rate and ETA; losses and LR to TensorBoard."""

    def __init__(self, writer: Any | None = None, log_every_n: int = 10, show_bar: bool = True) -> None:
        self.writer = writer  # torch.utils.tensorboard.SummaryWriter or None
        self.log_every_n = log_every_n
        self.show_bar = show_bar
        self._bar: Any = None

    def before_train(self, trainer: Trainer) -> None:
        if self.show_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=trainer.num_steps, initial=trainer.step, desc="train", unit="step")

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{losses['Loss/total_loss']:.4f}", lr=f"{trainer.learning_rate:.2e}")
        if self.writer is not None and trainer.step % self.log_every_n == 0:
            for name, value in losses.items():
                self.writer.add_scalar(name, value, trainer.step)
            self.writer.add_scalar("learning_rate", trainer.learning_rate, trainer.step)

    def after_train(self, trainer: Trainer) -> None:
        if self._bar is not None:
            self._bar.close()
        if self.writer is not None:
            self.writer.flush()


class CheckpointHook(Hook):
    """Saves the trainer state every ``every_n`` steps and at the end of training."""

    def __init__(self, manager: CheckpointManager, every_n: int, extra_state: dict[str, Any] | None = None) -> None:
        self.manager = manager
        self.every_n = every_n
        self.extra_state = extra_state or {}

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if self.every_n > 0 and trainer.step % self.every_n == 0:
            self.save(trainer)

    def after_train(self, trainer: Trainer) -> None:
        latest = self.manager.read_index().latest
        if latest != f"ckpt-{trainer.step}.pt":
            self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        self.manager.save(trainer.step, {**trainer.state_dict(), **self.extra_state})


class EvalHook(Hook):
    """Evaluates every ``every_n`` steps and at the end; logs metrics; tracks the best checkpoint.

    Run it after the CheckpointHook so that the step's checkpoint exists when it is ranked.
    """

    def __init__(
        self, evaluate: Callable[[Trainer], dict[str, float]], every_n: int,
        manager: CheckpointManager | None = None, writer: Any | None = None,
        best_metric: str | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.every_n = every_n
        self.manager = manager
        self.writer = writer
        self.best_metric = best_metric
        self.history: list[tuple[int, dict[str, float]]] = []
        self._last_step = -1

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if self.every_n > 0 and trainer.step % self.every_n == 0:
            self.run(trainer)

    def after_train(self, trainer: Trainer) -> None:
        if self._last_step != trainer.step:
            self.run(trainer)

    def run(self, trainer: Trainer) -> dict[str, float]:
        metrics = self.evaluate(trainer)
        self._last_step = trainer.step
        self.history.append((trainer.step, metrics))
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"eval/{name}", value, trainer.step)
            self.writer.flush()
        if self.manager is not None and self.best_metric and self.best_metric in metrics:
            self.manager.record_metric(trainer.step, (self.best_metric, metrics[self.best_metric]))
        return metrics

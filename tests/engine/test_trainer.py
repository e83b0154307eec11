"""The training loop on a tiny model that follows the objdet model contract."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from objdet.data.dataset import EpochSampler
from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.ema import build_ema
from objdet.engine.hooks import CheckpointHook, EvalHook
from objdet.engine.trainer import Trainer, TrainingDiverged


class TinyDetector(nn.Module):
    """Predicts the mean box of an image from its mean colour; dropout makes it use the RNG."""

    def __init__(self, explode_at_call: int | None = None) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Linear(8, 4))
        self.explode_at_call = explode_at_call
        self.calls = 0

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        self.calls += 1
        features = torch.stack([image.mean(dim=(1, 2)) for image in images])  # [B, 3]
        predicted = self.head(features)  # [B, 4]
        wanted = torch.stack([t["boxes"].mean(dim=0) for t in targets])  # [B, 4]
        loss = ((predicted - wanted) ** 2).mean()
        if self.explode_at_call is not None and self.calls >= self.explode_at_call:
            loss = loss * float("nan")
        return {"Loss/regression": loss}


def dataset() -> list[tuple[Tensor, dict[str, Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    items = []
    for _ in range(10):
        image = torch.rand(3, 4, 4, generator=generator)
        boxes = torch.rand(2, 4, generator=generator)
        items.append((image, {"boxes": boxes, "labels": torch.ones(2, dtype=torch.int64)}))
    return items


def batches(samples_seen: int, batch_size: int = 3):
    data = dataset()
    positions = iter(EpochSampler(len(data), shuffle=True, num_epochs=0, seed=7, start_position=samples_seen))
    indices = (position % len(data) for position in positions)
    while True:
        chosen = [data[i] for i in itertools.islice(indices, batch_size)]
        yield [c[0] for c in chosen], [c[1] for c in chosen]


def make_trainer(model_dir: Path, num_steps: int, samples_seen: int = 0, model: nn.Module | None = None,
                 checkpoint_every: int = 2) -> Trainer:
    torch.manual_seed(123)
    model = model or TinyDetector()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
    manager = CheckpointManager(model_dir)
    return Trainer(
        model=model, optimizer=optimizer, scheduler=scheduler, batches=batches(samples_seen),
        num_steps=num_steps, ema=build_ema(model, 0.5), gradient_clip_norm=1.0,
        hooks=[CheckpointHook(manager, checkpoint_every)],
    )


def test_resume_continues_with_identical_state(tmp_path: Path) -> None:
    straight = make_trainer(tmp_path / "a", num_steps=6)
    straight.train()

    first = make_trainer(tmp_path / "b", num_steps=4)
    first.train()
    # A new process: fresh objects, state from the latest checkpoint (step 4).
    state = CheckpointManager(tmp_path / "b").load(tmp_path / "b" / "ckpt-4.pt")
    torch.manual_seed(999)  # must not matter: the checkpoint restores the RNG
    resumed = make_trainer(tmp_path / "b", num_steps=6, samples_seen=state["samples_seen"])
    resumed.load_state_dict(state)
    assert resumed.step == 4
    resumed.train()

    assert resumed.step == straight.step == 6
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.learning_rate == resumed.learning_rate
    assert straight.optimizer.state_dict()["state"][0]["momentum_buffer"].equal(
        resumed.optimizer.state_dict()["state"][0]["momentum_buffer"]
    )


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, num_steps=10, model=TinyDetector(explode_at_call=4))
    with pytest.raises(TrainingDiverged, match="not finite at step 4"):
        trainer.train()
    manager = CheckpointManager(tmp_path)
    assert manager.read_index().latest == "ckpt-2.pt"
    state = manager.load(manager.latest_path())
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_eval_hook_ranks_checkpoints(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, num_steps=6)
    scores = iter([0.2, 0.9, 0.4])
    manager = CheckpointManager(tmp_path)
    hook = EvalHook(lambda t: {"AP": next(scores)}, every_n=2, manager=manager, best_metric="AP")
    trainer.hooks.append(hook)
    trainer.train()
    assert [step for step, _ in hook.history] == [2, 4, 6]
    assert manager.read_index().best == "ckpt-4.pt"


def test_state_dict_round_trips_without_a_checkpoint_manager(tmp_path: Path) -> None:
    """Trainer A's state_dict, loaded into a fresh Trainer B, continues exactly as A does."""
    first = make_trainer(tmp_path / "a", num_steps=3)
    first.hooks = []
    first.train()
    state = copy.deepcopy(first.state_dict())  # A keeps training in place below
    assert state["step"] == 3 and state["samples_seen"] == 9
    first.num_steps = 6
    first.train()

    torch.manual_seed(999)  # must not matter: the state restores the RNG
    second = make_trainer(tmp_path / "b", num_steps=6, samples_seen=state["samples_seen"])
    second.hooks = []
    second.load_state_dict(state)
    assert (second.step, second.samples_seen) == (3, 9)
    second.train()
    assert second.step == first.step == 6
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(first.ema.state_dict().values(), second.ema.state_dict().values()):
        assert torch.equal(a, b)
    assert first.learning_rate == second.learning_rate

"""configs/'s Faster R-CNN and CenterNet raccoon configs (benchmarks/family_raccoon.py) parse,
build and train a step; their batch norms forget their initial statistics within their run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tiny_detector import example_bytes, sample_image

import objdet.config
from objdet.data.tfrecord import TFRecordWriter
from objdet.engine.trainer import Hook, Trainer
from objdet.engine.training import TrainOptions, train, warn_slow_batch_norm

REPOSITORY = Path(__file__).resolve().parents[2]
FAMILY_CONFIGS = {
    "faster_rcnn": REPOSITORY / "configs" / "faster_rcnn_resnet50_fpn_raccoon.config",
    "center_net": REPOSITORY / "configs" / "center_net_hourglass10_raccoon.config",
}
RACCOON_LABEL_MAP = REPOSITORY / "datasets" / "raccoon" / "object-detection.pbtxt"


class SlowBatchNorms(Hook):
    """The batch norms of the model being trained that would not forget their initial
    statistics within ``num_steps`` (checked once, before training)."""

    def __init__(self, num_steps: int) -> None:
        self.num_steps = num_steps
        self.names: list[str] | None = None

    def before_train(self, trainer: Trainer) -> None:
        self.names = warn_slow_batch_norm(trainer.model, self.num_steps)


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_config_trains_one_step_on_one_64x64_image(family: str, tmp_path: Path) -> None:
    """The config as written (augmentation, optimizer, schedule, eval metrics), with a 64x64
    resizer and batch 1 to stay cheap, trains one step on one image and evaluates it. Trained
    from scratch for the config's num_steps, every batch norm must forget mean 0 / variance 1
    (else evaluation runs on stale statistics), and the cosine decay must end at num_steps."""
    record = tmp_path / "one.record"
    with TFRecordWriter(record) as writer:
        writer.write(example_bytes(sample_image(64, 64)))
    resizer = f"model.{family}.image_resizer.fixed_shape_resizer"
    config = objdet.config.load(FAMILY_CONFIGS[family], overrides=[
        f"{resizer}.height=64", f"{resizer}.width=64", "train_config.batch_size=1",
        f"train_input_reader.tf_record_input_reader.input_path=['{record}']",
        f"train_input_reader.label_map_path='{RACCOON_LABEL_MAP}'",
        f"eval_input_reader[0].tf_record_input_reader.input_path=['{record}']",
        f"eval_input_reader[0].label_map_path='{RACCOON_LABEL_MAP}'",
    ])
    assert config.model.WhichOneof("model") == family
    num_steps = config.train_config.num_steps
    schedule = config.train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate
    assert schedule.total_steps == num_steps
    assert 0 < schedule.warmup_steps < num_steps

    slow_batch_norms = SlowBatchNorms(num_steps)
    result = train(config, tmp_path / "model", TrainOptions(
        num_train_steps=1, num_workers=0, show_progress=False, extra_hooks=(slow_batch_norms,)))
    assert slow_batch_norms.names == []
    assert result.step == 1
    metrics = result.eval_history[-1][1]
    assert 0.0 <= metrics["PascalBoxes_Precision/mAP@0.5IOU"] <= 1.0
    assert math.isfinite(metrics["DetectionBoxes_Precision/mAP@.75IOU"])

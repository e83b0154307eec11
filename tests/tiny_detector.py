"""A tiny trained-looking SSD for export/inference tests (helper module, not a test file).

ssd_mobilenet_v2 (depth_multiplier 0.25), a 64x64 fixed_shape_resizer, 2 classes; its
checkpoint holds random "model" weights and *different* random "ema" weights, so tests
see which ones were used (the config keeps the OD API's use_moving_average: true).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.optim.swa_utils import AveragedModel

from objdet import config as cfg
from objdet.data.example import encode_sample
from objdet.engine.checkpoint import CheckpointManager
from objdet.models import build_model
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BASE_CONFIG = SHARED_DATA / "odapi" / "configs" / "tf1_samples" / "ssd_mobilenet_v2_coco.config"
MAX_DETECTIONS = 20
STEP = 7


@dataclass
class TinyTraining:
    config_path: Path
    checkpoint_dir: Path
    label_map_path: Path
    reference: nn.Module  # eval mode, holding the checkpoint's EMA weights


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    """Random weights with spread-out scores, so detections differ and sort uniquely."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def write_tiny_training(root: Path) -> TinyTraining:
    """A label map, a pipeline.config and a model_dir with one checkpoint under ``root``."""
    label_map_path = root / "label_map.pbtxt"
    LabelMap.from_names(["raccoon", "fox"]).save(label_map_path)
    config = cfg.load(BASE_CONFIG)
    ssd = config.model.ssd
    ssd.num_classes = 2
    ssd.image_resizer.fixed_shape_resizer.height = 64
    ssd.image_resizer.fixed_shape_resizer.width = 64
    ssd.feature_extractor.depth_multiplier = 0.25
    ssd.post_processing.batch_non_max_suppression.max_total_detections = MAX_DETECTIONS
    config.train_input_reader.label_map_path = str(label_map_path)
    config.eval_input_reader[0].label_map_path = str(label_map_path)
    config_path = root / "pipeline.config"
    cfg.save(config, config_path)

    torch.manual_seed(0)
    raw = _perturbed(build_model(config.model), seed=1)
    averaged = _perturbed(build_model(config.model), seed=2)
    ema = AveragedModel(averaged)
    checkpoint_dir = root / "model_dir"
    CheckpointManager(checkpoint_dir).save(STEP, {"model": raw.state_dict(), "ema": ema.state_dict()})
    return TinyTraining(config_path, checkpoint_dir, label_map_path, averaged)


def sample_image(height: int = 48, width: int = 80, seed: int = 0) -> np.ndarray:
    """``uint8 [H, W, 3]`` noise with a bright rectangle (something box-like to find)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, size=(height, width, 3), dtype=np.uint8)
    image[10:35, 20:60] = (230, 180, 40)
    return image


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def example_bytes(image: np.ndarray, filename: str = "img.png") -> bytes:
    """A serialized tf.Example of ``image`` (PNG) with one ground-truth box."""
    height, width = image.shape[:2]
    sample = Sample(
        height=height, width=width, boxes=torch.tensor([[20.0, 10.0, 60.0, 35.0]]),
        labels=torch.tensor([1]), encoded_image=png_bytes(image), image_format="png",
        filename=filename, source_id=filename, label_texts=["raccoon"],
    )
    return encode_sample(sample)


def reference_detections(model: nn.Module, image: np.ndarray) -> dict[str, torch.Tensor]:
    """The checkpoint model's eval-mode detections of a ``uint8 [H, W, 3]`` image."""
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        return model([pixels])[0]  # type: ignore[no-any-return]

"""The reference for the main job: torchvision's SSDlite-320 trained from scratch on raccoons.

Trains ``torchvision.models.detection.ssdlite320_mobilenet_v3_large`` (no pretrained weights)
with flips only, AdamW and batch 16, reading the same TFRecords through objdet's loader, and
evaluates it every 100 steps with objdet's evaluators on the 40 test images: the recipe the
issue quotes as reaching AP@0.5 0.76. Prints one line per evaluation; the numbers go to
benchmarks/RESULTS.md by hand, beside the main job's.

    python benchmarks/torchvision_ssdlite_reference.py [--steps 360] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from objdet.data.dataset import build_data_loader, build_dataset
from objdet.demo import AP50, convert_raccoon, load_raccoon_config
from objdet.engine.evaluate import build_eval_inputs, evaluate_detector
from objdet.protos import preprocessor_pb2

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "ssdlite_mobilenet_v3_large_raccoon.config"
RACCOON = REPO / "datasets" / "raccoon"
AP75 = "DetectionBoxes_Precision/mAP@.75IOU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=360)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--num_workers", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        records = convert_raccoon(RACCOON, Path(tmp))
        config = load_raccoon_config(CONFIG, records, RACCOON)
        flip = preprocessor_pb2.PreprocessingStep()
        flip.random_horizontal_flip.SetInParent()
        dataset = build_dataset(config.train_input_reader, training=True, augmentation_steps=[flip])
        batches = iter(build_data_loader(dataset, config.train_config.batch_size, args.num_workers, training=True))
        evaluation = build_eval_inputs(config)
        assert evaluation is not None

        # 2 classes: background + raccoon (label-map id 1), so labels need no mapping.
        model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2)
        model = model.to(memory_format=torch.channels_last)  # as objdet's models (1.8x on CPU)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / args.warmup)
                                                     * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        started = time.perf_counter()
        for step in range(1, args.steps + 1):
            images, targets = next(batches)
            images = [image.float() / 255 if image.dtype == torch.uint8 else image for image in images]
            model.train()
            losses = model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            schedule.step()
            if step % 100 == 0 or step == args.steps:
                metrics = evaluate_detector(model, evaluation.loader, evaluation.evaluators)
                print(f"step {step}: AP@0.5 {metrics[AP50]:.3f} AP@0.75 {metrics[AP75]:.3f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

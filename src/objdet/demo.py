"""The main job on the bundled raccoon dataset: convert, train, evaluate, export, detect.

``objdet demo`` (and ``make demo``) runs it end to end from the config and dataset shipped in
the package (``objdet.samples``; ``configs/`` and ``datasets/raccoon`` in the source tree link
there), so it runs from any folder after ``pip install``. It prints the AP@0.5 reached on the
40 test images and its wall time. Each step is the same library call the individual commands
make.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objdet.errors import ObjdetError
from objdet.samples import main_job_config_path, raccoon_dataset_dir

AP50 = "PascalBoxes_Precision/mAP@0.5IOU"


@dataclass
class DemoResult:
    ap50: float
    metrics: dict[str, float]
    seconds: dict[str, float]  # wall time per stage
    export_dir: Path
    drawings: list[Path]


def convert_raccoon(dataset_dir: Path, data_dir: Path) -> dict[str, Path]:
    """train_labels.csv / test_labels.csv -> data_dir/{train,test}.record."""
    from objdet.data.formats import CsvReader, convert_to_tfrecord
    from objdet.structures.label_map import load_label_map

    label_map = load_label_map(dataset_dir / "object-detection.pbtxt")
    records = {}
    for split in ("train", "test"):
        reader = CsvReader(dataset_dir / f"{split}_labels.csv", dataset_dir / "images", label_map)
        records[split] = data_dir / f"{split}.record"
        summary = convert_to_tfrecord(reader, str(records[split]), num_shards=1)
        print(summary.format())
    return records


def load_raccoon_config(config_path: Path, records: dict[str, Path], dataset_dir: Path) -> Any:
    """The main job's config with its placeholder inputs set to ``records`` (from
    :func:`convert_raccoon`) and the dataset's label map."""
    import objdet.config

    label_map_path = dataset_dir / "object-detection.pbtxt"
    return objdet.config.load(config_path, overrides=[
        f"train_input_reader.tf_record_input_reader.input_path=['{records['train']}']",
        f"train_input_reader.label_map_path='{label_map_path}'",
        f"eval_input_reader[0].tf_record_input_reader.input_path=['{records['test']}']",
        f"eval_input_reader[0].label_map_path='{label_map_path}'",
    ])


def run_demo(
    output_dir: Path = Path("out/demo"), config_path: Path | None = None,
    dataset_dir: Path | None = None, num_train_steps: int | None = None,
    num_workers: int = 1, num_drawings: int = 4, seed: int = 0,
) -> DemoResult:
    """Run the main job into ``output_dir`` (its model is retrained from scratch).

    ``config_path`` and ``dataset_dir`` default to the samples shipped in the package;
    ``seed`` seeds the model's initialization and the input pipeline (shuffling, augmentation).
    """
    from objdet.engine.training import TrainOptions, train
    from objdet.export.exporter import export_inference_graph

    config_path = config_path or main_job_config_path()
    dataset_dir = dataset_dir or raccoon_dataset_dir()
    if not dataset_dir.is_dir():
        raise ObjdetError(f"{dataset_dir}: the raccoon dataset is not there (expected images/ and the CSVs)")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    records = convert_raccoon(dataset_dir, output_dir / "data")
    seconds["convert"] = time.perf_counter() - start

    config = load_raccoon_config(config_path, records, dataset_dir)
    model_dir = output_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)  # the demo always trains from scratch
    stage = time.perf_counter()
    result = train(config, model_dir, TrainOptions(num_train_steps=num_train_steps, num_workers=num_workers,
                                                   checkpoint_every_n=100, seed=seed))
    seconds["train+eval"] = time.perf_counter() - stage
    metrics = result.eval_history[-1][1]

    stage = time.perf_counter()
    export_dir = output_dir / "export"
    # the torch program only: model.onnx would add ~15 s to the main job's time budget
    # (`objdet export` writes both)
    export_inference_graph(pipeline_config_path=model_dir / "pipeline.config",
                           trained_checkpoint_dir=model_dir, output_directory=export_dir,
                           formats=("pt2",))
    drawings = draw_test_images(export_dir, dataset_dir, output_dir / "detections", num_drawings)
    seconds["export+detect"] = time.perf_counter() - stage
    seconds["total"] = time.perf_counter() - start
    return DemoResult(metrics[AP50], metrics, seconds, export_dir, drawings)


def draw_test_images(export_dir: Path, dataset_dir: Path, drawings_dir: Path, count: int) -> list[Path]:
    """Detect on the first ``count`` test images and draw detections scoring >= 0.5."""
    import csv

    from objdet.inference.inputs import read_image_file
    from objdet.inference.predictor import Predictor
    from objdet.viz.draw import save_drawing

    with open(dataset_dir / "test_labels.csv", newline="") as handle:
        names = list(dict.fromkeys(row["filename"] for row in csv.DictReader(handle)))[:count]
    predictor = Predictor.from_export(export_dir)
    drawings = []
    for name in names:
        pixels = read_image_file(dataset_dir / "images" / name)
        detections = predictor.predict_pixels(pixels).above(0.5)
        path = drawings_dir / f"{Path(name).stem}.png"
        save_drawing(pixels, detections.boxes, detections.labels, detections.scores, path, predictor.label_map)
        drawings.append(path)
    return drawings

"""``objdet eval-offline`` over real TFRecords holding ground truth and detections."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from objdet.data.example import encode_sample
from objdet.data.tfrecord import TFRecordWriter
from objdet.errors import ConfigError, DataError
from objdet.evaluation.offline import run_offline_evaluation
from objdet.evaluation.reports import read_metrics_csv
from objdet.structures.sample import Sample

LABEL_MAP = 'item { id: 1 name: "cat" }\nitem { id: 2 name: "dog" }\n'


def png_bytes(width: int = 100, height: int = 50) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def sample(source_id: str, detections: bool = True, **fields: object) -> Sample:
    item = Sample(
        height=50,
        width=100,
        encoded_image=png_bytes(),
        image_format="png",
        source_id=source_id,
        **fields,
    )  # type: ignore[arg-type]
    if detections:
        item.detection_boxes = torch.tensor(
            [[0.0, 0.0, 10.0, 10.0], [50.0, 0.0, 60.0, 10.0], [20.0, 20.0, 40.0, 40.0]]
        )
        item.detection_scores = torch.tensor([0.9, 0.8, 0.7])
        item.detection_labels = torch.tensor([1, 1, 2])
    return item


def write_dataset(
    tmp_path: Path, metrics_set: str = "pascal_voc_detection_metrics"
) -> tuple[Path, Path]:
    (tmp_path / "label_map.pbtxt").write_text(LABEL_MAP)
    with TFRecordWriter(tmp_path / "eval.record") as writer:
        # a: cat TP (0.9), cat on a difficult cat (ignored), dog FP (0.7)
        writer.write(
            encode_sample(
                sample(
                    "a",
                    boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 0.0, 60.0, 10.0]]),
                    labels=torch.tensor([1, 1]),
                    difficult=torch.tensor([False, True]),
                )
            )
        )
        # b: a dog never detected; no detection fields -> skipped and counted
        writer.write(
            encode_sample(
                sample(
                    "b",
                    detections=False,
                    boxes=torch.tensor([[0.0, 0.0, 5.0, 5.0]]),
                    labels=torch.tensor([2]),
                )
            )
        )
        # c: dog detected (0.7 TP, same boxes as a's detections), cats are FPs
        writer.write(
            encode_sample(
                sample(
                    "c",
                    boxes=torch.tensor([[20.0, 20.0, 40.0, 40.0]]),
                    labels=torch.tensor([2]),
                )
            )
        )
    eval_config = tmp_path / "eval.config"
    eval_config.write_text(f'metrics_set: "{metrics_set}"\n')
    input_config = tmp_path / "input.config"
    input_config.write_text(
        f'label_map_path: "{tmp_path / "label_map.pbtxt"}"\n'
        f'tf_record_input_reader {{ input_path: "{tmp_path / "eval.record"}" }}\n'
    )
    return eval_config, input_config


def test_offline_evaluation_writes_metrics_csv(tmp_path: Path) -> None:
    eval_config, input_config = write_dataset(tmp_path)
    result = run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
    assert (result.num_images, result.num_skipped) == (2, 1)
    metrics = read_metrics_csv(tmp_path / "eval" / "metrics.csv")
    # cat: .9 TP (a), .9 FP (c), .8 FP (c); 1 cat -> precision 1 or 1/2 at recall 1
    # with tied .9 scores in image order (a before c): AP 1.0.
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/cat"] == pytest.approx(1.0)
    # dog: .7 FP (a), .7 TP (c) tied, a first; b was skipped whole (as the OD API skips
    # records without detections), so 1 dog -> precision 1/2 at recall 1.
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog"] == pytest.approx(0.5)
    assert metrics["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(0.75)


def test_offline_evaluation_errors(tmp_path: Path) -> None:
    eval_config, input_config = write_dataset(tmp_path, "no_such_metrics")
    with pytest.raises(ConfigError, match="unknown metrics set 'no_such_metrics'"):
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
    eval_config.write_text("metrics_set: pascal\n")
    with pytest.raises(ConfigError, match=r"eval.config:1"):
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
    eval_config.write_text('metrics_set: "pascal_voc_detection_metrics"\n')
    with TFRecordWriter(tmp_path / "eval.record") as writer:
        writer.write(encode_sample(sample("only", detections=False)))
    with pytest.raises(DataError, match="no record holds detections"):
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)


def test_eval_offline_command(tmp_path: Path) -> None:
    eval_config, input_config = write_dataset(tmp_path)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "objdet",
            "eval-offline",
            f"--eval_dir={tmp_path / 'out'}",
            f"--eval_config_path={eval_config}",
            f"--input_config_path={input_config}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "PascalBoxes_Precision/mAP@0.5IOU: 0.7500" in completed.stdout
    assert "skipped 1" in completed.stdout
    assert read_metrics_csv(tmp_path / "out" / "metrics.csv")[
        "PascalBoxes_Precision/mAP@0.5IOU"
    ] == pytest.approx(0.75)


def test_eval_offline_command_reports_bad_paths_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from objdet.cli.main import main

    _, input_config = write_dataset(tmp_path)
    code = main(
        [
            "eval-offline",
            f"--eval_dir={tmp_path}",
            f"--eval_config_path={tmp_path / 'absent.config'}",
            f"--input_config_path={input_config}",
        ]
    )
    assert code == 2
    assert "absent.config" in capsys.readouterr().err

"""The OD API's ``faster_rcnn_inception_resnet_v2_keras`` extractor at full size, with
realistic seeded weights: the reference side of ``benchmarks/inception_resnet_v2_parity.py``.

Run in the reference environment (TensorFlow 2.21 + the OD API, ../shared/odapi-reference):

    /tmp/odapi-ref/bin/python benchmarks/odapi_reference/inception_resnet_v2_reference.py \\
        --output_dir /tmp/parity_ref/faster_rcnn_inception_resnet_v2 [--image_size 320] \\
        [--proposals 8] [--seed 0] [--keys_out tests/fixtures/.../keys.json.gz]

It builds the whole Faster R-CNN of
``configs/tf2/mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config`` (masks off, two
stages, 2 classes, a ``--image_size`` square canvas, ``--proposals`` proposals so the
second stage stays cheap on a CPU) -- the extractor itself is untouched: full width,
``first_stage_features_stride`` 16, ``align_feature_maps``. Weights: ``realistic_weights``
(variance-preserving kernels, batch norm statistics measured on raccoon images). Then it
writes into ``--output_dir``:

- ``pipeline.config`` (the config after the changes) and ``checkpoint/ckpt-0.*`` (the TF2
  checkpoint as the OD API exporter writes it: ``model/_feature_extractor_for_*``);
- ``reference.npz``: per image ``i``: ``preprocessed_i`` ([1, H, W, 3], in [-1, 1]),
  ``rpn_features_i`` ([1, H/16, W/16, 1088], ``block17_20_ac``), ``cropped_features_i``
  ([P, 17, 17, 1088], the crops the second stage receives) and
  ``box_classifier_features_i`` ([P, 9, 9, 1536], ``conv_7b_ac``), all NHWC float32.

``--keys_out FILE.json.gz`` also writes every variable key and shape of the detection
checkpoint (``model/...``) and of a classification checkpoint of the same backbone
(``tf.train.Checkpoint(feature_extractor=classification_backbone)``, what
``fine_tune_checkpoint_type: classification`` restores): the suite checks objdet's variable
maps against them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT.parent / "shared" / "odapi-reference"))
sys.path.insert(0, str(HERE))
import odapi

# isort: split
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from object_detection.protos import pipeline_pb2
from realistic_weights import calibrating_batch_norms, initialize

CONFIG = ROOT.parent / "shared" / "data" / "odapi" / "configs" / "tf2" / (
    "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config")
RACCOON = ROOT.parent / "shared" / "data" / "raccoon" / "images"
IMAGES = ["raccoon-1.jpg", "raccoon-10.jpg"]
CALIBRATION = [*IMAGES, "raccoon-100.jpg", "raccoon-101.jpg"]


def pipeline(image_size: int, proposals: int) -> pipeline_pb2.TrainEvalPipelineConfig:
    config = pipeline_pb2.TrainEvalPipelineConfig()
    text_format.Merge(CONFIG.read_text(), config)
    frcnn = config.model.faster_rcnn
    frcnn.number_of_stages = 2
    frcnn.num_classes = 2
    frcnn.image_resizer.fixed_shape_resizer.height = image_size
    frcnn.image_resizer.fixed_shape_resizer.width = image_size
    frcnn.first_stage_max_proposals = proposals
    frcnn.second_stage_batch_size = proposals
    frcnn.second_stage_box_predictor.mask_rcnn_box_predictor.predict_instance_masks = False
    nms = frcnn.second_stage_post_processing.batch_non_max_suppression
    nms.max_detections_per_class, nms.max_total_detections = proposals, proposals
    return config


def load_image(path: Path) -> tf.Tensor:
    """[1, H, W, 3] float32 0..255."""
    image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
    return tf.cast(image[None], tf.float32)


def extractor_outputs(model: tf.Module, preprocessed: tf.Tensor, shapes: tf.Tensor
                      ) -> dict[str, np.ndarray]:
    predictions = model.predict(preprocessed, shapes)
    cropped = model._compute_second_stage_input_feature_maps(
        predictions["rpn_features_to_crop"], predictions["proposal_boxes_normalized"],
        predictions["image_shape"])
    return {
        "preprocessed": np.asarray(preprocessed),
        "rpn_features": np.asarray(predictions["rpn_features_to_crop"][0]),  # a list of one
        "cropped_features": np.asarray(cropped),
        "box_classifier_features": np.asarray(predictions["box_classifier_features"]),
    }


def checkpoint_keys(**objects: tf.Module) -> list[list]:
    with tempfile.TemporaryDirectory() as directory:
        prefix = tf.train.Checkpoint(**objects).save(f"{directory}/ckpt")
        return [[key, list(shape)] for key, shape in tf.train.list_variables(prefix)
                if not key.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--image_size", type=int, default=320)
    parser.add_argument("--proposals", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keys_out", type=Path, default=None)
    args = parser.parse_args()
    tf.random.set_seed(args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    config_path = args.output_dir / "pipeline.config"
    config_path.write_text(text_format.MessageToString(pipeline(args.image_size, args.proposals)))
    model, _ = odapi.build(str(config_path))
    batch = [model.preprocess(load_image(RACCOON / name)) for name in CALIBRATION]
    images = tf.concat([preprocessed for preprocessed, _ in batch], 0)  # [N, S, S, 3]
    shapes = tf.concat([shape for _, shape in batch], 0)  # [N, 3]
    model.predict(images[:1], shapes[:1])  # builds the variables
    initialize(model, args.seed)
    with calibrating_batch_norms():
        model.predict(images, shapes)
    arrays: dict[str, np.ndarray] = {}
    for index in range(len(IMAGES)):
        outputs = extractor_outputs(model, images[index:index + 1], shapes[index:index + 1])
        for key, value in outputs.items():
            arrays[f"{key}_{index}"] = value
            print(f"{key}_{index}", value.shape, f"mean|x| {np.abs(value).mean():.4g}",
                  f"std {value.std():.4g}")
    np.savez_compressed(args.output_dir / "reference.npz", **arrays)
    directory = args.output_dir / "checkpoint"
    if directory.exists():
        shutil.rmtree(directory)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(directory),
                                         max_to_keep=1)
    manager.save(checkpoint_number=0)
    if args.keys_out is not None:
        keys = {
            "detection": [[key, shape] for key, shape in checkpoint_keys(model=model)
                          if key.startswith("model/_feature_extractor")],
            "classification": checkpoint_keys(
                feature_extractor=model._feature_extractor.classification_backbone),
        }
        with gzip.open(args.keys_out, "wt") as stream:
            json.dump(keys, stream)
        print("keys", {name: len(values) for name, values in keys.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

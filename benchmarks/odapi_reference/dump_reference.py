"""The OD API side of the parity benchmark: a model with realistic weights and its outputs.

Run with the reference environment's python (TensorFlow 2.21, see ../../../shared/odapi-reference):

    /tmp/odapi-ref/bin/python benchmarks/odapi_reference/dump_reference.py \\
        --config CONFIG [--override FIELD=VALUE ...] --images IMG... [--max_image_dim N] \\
        --seed S --output_dir D

Writes D/pipeline.config (the config after overrides: objdet builds exactly this),
D/checkpoint/ (ckpt-0.* + `checkpoint` state file, as the OD API exporter and the TF2 zoo),
D/reference.npz, D/variables.json and D/meta.json; README.md beside this file describes them.
Exit status 3: the weights gave feature maps that barely depend on the input (the check that
keeps a parity comparison from passing trivially).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ODAPI_REFERENCE = Path(
    os.environ.get("ODAPI_REFERENCE", HERE.parents[2] / "shared" / "odapi-reference")
)
sys.path.insert(0, str(ODAPI_REFERENCE))
import odapi  # must precede TensorFlow: it selects Keras 2 and puts object_detection on the path

# isort: split
import numpy as np
import tensorflow as tf
from checkpoint_keys import describe_checkpoint
from google.protobuf import text_format
from object_detection.protos import pipeline_pb2
from pipeline_overrides import OverrideError, apply_overrides
from realistic_weights import realistic_weights

MIN_RELATIVE_STD = 0.1  # per-channel std over images and positions / mean |value|
MIN_MEAN_ABS = 1e-3
MIN_IMAGE_DIFFERENCE = 0.01  # 100x the raw tolerance; mean |map(image 0) - map(image 1)| / mean |value|
EXIT_NOT_INPUT_DEPENDENT = 3
FAMILIES = ("ssd", "faster_rcnn", "center_net")


def write_pipeline(config: Path, overrides: list[str], output_dir: Path) -> Path:
    pipeline = pipeline_pb2.TrainEvalPipelineConfig()
    text_format.Merge(config.read_text(), pipeline)
    apply_overrides(pipeline, overrides)
    family = pipeline.model.WhichOneof("model")
    if family not in FAMILIES:
        raise OverrideError(
            f"{config}: model is {family!r}; supported: {', '.join(FAMILIES)}"
        )
    if family == "center_net":
        import center_net_reference

        center_net_reference.fill_keypoint_label_map(pipeline, output_dir)
    path = output_dir / "pipeline.config"
    path.write_text(text_format.MessageToString(pipeline))
    return path


def load_image(path: Path, max_dim: int | None) -> np.ndarray:
    """uint8 [H, W, 3]; shrunk (area) so max(H, W) <= max_dim when given."""
    image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
    height, width = image.shape[:2]
    if max_dim is not None and max(height, width) > max_dim:
        scale = max_dim / max(height, width)
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        image = tf.cast(tf.round(tf.image.resize(image, size, method="area")), tf.uint8)
    return image.numpy()


def preprocess(model: tf.Module, image: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    """As an exported OD API model: uint8 [1, H, W, 3] cast to float 0..255, then model.preprocess."""
    return model.preprocess(tf.cast(tf.constant(image[None]), tf.float32))


def input_dependence(feature_maps: list[list[np.ndarray]]) -> list[dict[str, float]]:
    """Per level: how much the maps vary over images and positions (feature_maps[image][level])."""
    stats = []
    for level in range(len(feature_maps[0])):
        maps = np.concatenate([per_image[level] for per_image in feature_maps], 0)  # [N, H, W, C]
        mean_abs = float(np.mean(np.abs(maps)))
        channel_std = maps.reshape(-1, maps.shape[-1]).std(axis=0)  # [C]
        level_stats = {
            "shape": list(maps.shape[1:]),
            "mean_abs": mean_abs,
            "relative_std": float(channel_std.mean() / max(mean_abs, 1e-30)),
        }
        if len(feature_maps) > 1:
            difference = np.abs(feature_maps[0][level] - feature_maps[1][level]).mean()
            level_stats["image_difference"] = float(difference / max(mean_abs, 1e-30))
        stats.append(level_stats)
    return stats


def check_input_dependence(stats: list[dict[str, float]]) -> list[str]:
    failures = []
    for level, level_stats in enumerate(stats):
        if level_stats["mean_abs"] < MIN_MEAN_ABS:
            failures.append(
                f"level {level}: mean |value| {level_stats['mean_abs']:.3g} < {MIN_MEAN_ABS}"
            )
        if level_stats["relative_std"] < MIN_RELATIVE_STD:
            failures.append(
                f"level {level}: relative std {level_stats['relative_std']:.3g} < {MIN_RELATIVE_STD}"
            )
        if level_stats.get("image_difference", 1.0) < MIN_IMAGE_DIFFERENCE:
            failures.append(
                f"level {level}: image difference {level_stats['image_difference']:.3g} "
                f"< {MIN_IMAGE_DIFFERENCE}"
            )
    return failures


def run_image(model: tf.Module, image: np.ndarray, index: int) -> dict[str, np.ndarray]:
    """Every reference array for one image, keys suffixed by the image index."""
    preprocessed, true_shapes = preprocess(model, image)
    predictions = model.predict(preprocessed, true_shapes)
    detections = model.postprocess(predictions, true_shapes)
    arrays = {
        f"image_{index}": image,
        f"preprocessed_{index}": preprocessed.numpy(),
        f"true_image_shape_{index}": true_shapes.numpy(),
    }
    for level, feature_map in enumerate(predictions["feature_maps"]):
        arrays[f"feature_maps_{index}_{level}"] = feature_map.numpy()
    for key in ("anchors", "box_encodings", "class_predictions_with_background"):
        arrays[f"{key}_{index}"] = predictions[key].numpy()
    for key, value in detections.items():
        arrays[f"{key}_{index}"] = value.numpy()
    return arrays


def save_checkpoint(model: tf.Module, output_dir: Path) -> Path:
    """ckpt-0 + state file exactly as exporter_lib_v2 (and so the TF2 zoo) writes them."""
    directory = output_dir / "checkpoint"
    if directory.exists():
        shutil.rmtree(directory)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(directory), max_to_keep=1
    )
    return Path(manager.save(checkpoint_number=0))


def use_exact_squeeze_mean() -> None:
    """Average Keras ``GlobalAveragePooling2D`` (EfficientNet's squeeze-excite) in float64.

    TF's float32 ``reduce_mean`` over a 320x320 map is off by ~3e-6 relative (PyTorch's: 1e-7);
    through EfficientNet's squeeze-excite blocks that becomes 1e-4..4e-4 of the full-size
    outputs. With the mean in float64 the OD API's EfficientNet and objdet's agree to 1e-6
    block by block (benchmarks/RESULTS.md, 2026-12-07). Nothing else changes.
    """
    import tf_keras

    def call(self, inputs):  # type: ignore[no-untyped-def]
        mean = tf.reduce_mean(tf.cast(inputs, tf.float64), axis=[1, 2], keepdims=self.keepdims)
        return tf.cast(mean, inputs.dtype)

    tf_keras.layers.GlobalAveragePooling2D.call = call


def save_classification_checkpoint(model: tf.Module, output_dir: Path) -> Path:
    """The backbone alone, as a TF2 classification checkpoint holds it: what
    ``restore_from_objects('classification')`` restores (``feature_extractor/...``)."""
    backbone = model._feature_extractor.classification_backbone
    directory = output_dir / "classification"
    if directory.exists():
        shutil.rmtree(directory)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(feature_extractor=backbone), str(directory), max_to_keep=1
    )
    return Path(manager.save(checkpoint_number=0))


def score_ties(arrays: dict[str, np.ndarray], num_images: int) -> list[int]:
    """Per image: how many valid detections share their score with the next one."""
    ties = []
    for index in range(num_images):
        count = int(arrays[f"num_detections_{index}"][0])
        scores = arrays[f"detection_scores_{index}"][0, :count]
        ties.append(int(np.sum(scores[1:] == scores[:-1])))
        if np.any(scores >= 1.0):
            print(
                f"warning: image {index}: {int(np.sum(scores >= 1.0))} detection scores saturate at 1.0"
            )
    return ties


def anchor_convention(model: tf.Module, anchors: np.ndarray, preprocessed_shape: list[int]) -> dict:
    """How anchors_i is laid out (MultipleGridAnchorGenerator is always normalized)."""
    generator = type(model._anchor_generator).__name__
    normalized = bool(getattr(model._anchor_generator, "_normalize_coordinates", True))
    height, width = preprocessed_shape[:2]
    frame = "fractions of" if normalized else "pixels of"
    return {
        "generator": generator,
        "normalized": normalized,
        "order": "ymin, xmin, ymax, xmax",
        "relative_to": f"{frame} the preprocessed (resized, padded) image, {height}x{width}; not clipped",
        "extent": [float(anchors.min()), float(anchors.max())],
        "same_for_all_images": True,
    }


def family_reference(family: str):  # type: ignore[no-untyped-def]
    """The module dumping a two-stage or CenterNet model; None for SSD (this file)."""
    if family == "faster_rcnn":
        import faster_rcnn_reference

        return faster_rcnn_reference
    if family == "center_net":
        import center_net_reference

        return center_net_reference
    return None


def ssd_meta(model: tf.Module, ssd, anchors: np.ndarray, preprocessed_shape: list[int]) -> dict:  # type: ignore[no-untyped-def]
    return {
        "num_classes": ssd.num_classes,
        "post_processing": text_format.MessageToString(ssd.post_processing, as_one_line=True),
        "anchors": anchor_convention(model, anchors, preprocessed_shape),
        "num_anchors": int(anchors.shape[0]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--images", type=Path, nargs="+", required=True)
    parser.add_argument(
        "--max_image_dim",
        type=int,
        default=None,
        help="shrink each image (area) to fit this size before feeding it (small fixtures)",
    )
    parser.add_argument(
        "--calibration_images",
        type=Path,
        nargs="+",
        default=None,
        help="images whose statistics set the batch norms (default: --images); more images "
        "keep BNs on 1x1 maps from collapsing to +-1 when only two are dumped",
    )
    parser.add_argument(
        "--omit",
        nargs="+",
        default=[],
        metavar="KEY",
        help="leave these reference.npz arrays out (names without the _i suffix, e.g. "
        "raw_detection_scores preprocessed) to shrink committed fixtures",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument(
        "--classification_checkpoint",
        action="store_true",
        help="also write the backbone alone as a TF2 classification checkpoint "
        "(OUTPUT_DIR/classification/ckpt-0)",
    )
    parser.add_argument(
        "--no_variables_json", action="store_true", help="do not write variables.json"
    )
    parser.add_argument(
        "--exact_squeeze_mean",
        action="store_true",
        help="average GlobalAveragePooling2D (EfficientNet's squeeze-excite) in float64: "
        "TF's float32 reduce_mean error would otherwise dominate the comparison",
    )
    args = parser.parse_args()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    np.random.seed(args.seed)
    tf.random.set_seed(args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        pipeline_path = write_pipeline(args.config, args.override, args.output_dir)
    except (OverrideError, text_format.ParseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.exact_squeeze_mean:
        use_exact_squeeze_mean()
    model, configs = odapi.build(str(pipeline_path))
    images = [load_image(path, args.max_image_dim) for path in args.images]
    calibration_paths = args.calibration_images or args.images
    batch = [preprocess(model, load_image(path, args.max_image_dim)) for path in calibration_paths]
    shapes = {tuple(preprocessed.shape) for preprocessed, _ in batch}
    if len(shapes) != 1:
        print(
            f"error: preprocessed shapes differ {shapes}; BN calibration needs one batch",
            file=sys.stderr,
        )
        return 2
    calibration_images = tf.concat([preprocessed for preprocessed, _ in batch], 0)  # [N, H', W', 3]
    calibration_shapes = tf.concat([true_shape for _, true_shape in batch], 0)  # [N, 3]
    model.predict(calibration_images[:1], calibration_shapes[:1])  # builds the variables
    preprocessed_shape = list(calibration_images.shape[1:])
    timings["build_s"] = time.perf_counter() - start

    family = configs["model"].WhichOneof("model")
    family_module = family_reference(family)
    start = time.perf_counter()
    weights = family_module.realistic_weights if family_module else realistic_weights
    weights_summary = weights(model, calibration_images, calibration_shapes, args.seed)
    timings["weights_s"] = time.perf_counter() - start

    start = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    feature_maps: list[list[np.ndarray]] = []  # [image][level]
    for index, image in enumerate(images):
        if family_module is None:
            arrays.update(run_image(model, image, index))
            num_levels = sum(key.startswith(f"feature_maps_{index}_") for key in arrays)
            feature_maps.append(
                [arrays[f"feature_maps_{index}_{level}"] for level in range(num_levels)]
            )
        else:  # the maps are only checked, not stored (a 1024 px ResNet's are ~16 MB)
            image_arrays, maps = family_module.run_image(model, image, index)
            arrays.update(image_arrays)
            feature_maps.append(maps)
    timings["inference_s_per_image"] = (time.perf_counter() - start) / len(images)

    stats = input_dependence(feature_maps)
    for level, level_stats in enumerate(stats):
        print(f"level {level} {level_stats}")
    failures = check_input_dependence(stats)

    start = time.perf_counter()
    prefix = save_checkpoint(model, args.output_dir)
    if args.classification_checkpoint:
        save_classification_checkpoint(model, args.output_dir)
    variables = describe_checkpoint(tf.train.Checkpoint(model=model), str(prefix))
    if not args.no_variables_json:
        lines = [f"{json.dumps(key)}: {json.dumps(value)}" for key, value in variables.items()]
        (args.output_dir / "variables.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    kept = {k: v for k, v in arrays.items() if re.sub(r"(_\d+)+$", "", k) not in args.omit}
    np.savez_compressed(args.output_dir / "reference.npz", **kept)
    timings["save_s"] = time.perf_counter() - start

    if family_module is None:
        family_meta = ssd_meta(model, configs["model"].ssd, arrays["anchors_0"], preprocessed_shape)
    else:
        family_meta = family_module.describe(model, configs["model"])
    meta = {
        "config": str(args.config),
        "overrides": args.override,
        "seed": args.seed,
        "tensorflow_version": tf.__version__,
        "images": [
            {"path": str(path), "fed_shape": list(image.shape)}
            for path, image in zip(args.images, images)
        ],
        "max_image_dim": args.max_image_dim,
        "omitted_arrays": args.omit,
        "calibration_images": [str(path) for path in calibration_paths],
        "preprocessed_shape": preprocessed_shape,
        "family": family,
        **family_meta,
        "num_checkpoint_variables": len(variables),
        "input_dependence": stats,
        "input_dependence_failures": failures,
        "detection_score_ties": score_ties(arrays, len(images)),
        "weights": weights_summary,
        "timings": timings,
        "output_bytes": {
            path.name: path.stat().st_size
            for path in sorted(args.output_dir.rglob("*"))
            if path.is_file()
        },
    }
    (args.output_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(
        json.dumps(
            {
                "timings": timings,
                "score_ties": meta["detection_score_ties"],
                "bytes": sum(meta["output_bytes"].values()),
            }
        )
    )
    if failures:
        print(
            "error: feature maps barely depend on the input image:\n  " + "\n  ".join(failures),
            file=sys.stderr,
        )
        return EXIT_NOT_INPUT_DEPENDENT
    return 0


if __name__ == "__main__":
    sys.exit(main())

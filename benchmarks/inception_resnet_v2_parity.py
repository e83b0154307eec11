"""objdet's Inception-ResNet v2 Faster R-CNN extractor against the OD API's, at full size.

    /tmp/odapi-ref/bin/python benchmarks/odapi_reference/inception_resnet_v2_reference.py \\
        --output_dir /tmp/parity_ref/faster_rcnn_inception_resnet_v2
    python benchmarks/inception_resnet_v2_parity.py \\
        [--reference_dir /tmp/parity_ref/faster_rcnn_inception_resnet_v2] [--no_results]

The reference dump holds the OD API's ``faster_rcnn_inception_resnet_v2_keras`` Faster R-CNN
(the mask_rcnn_inception_resnet_v2 TF2 config, 2 stages) with realistic seeded weights, its
TF2 checkpoint, and per image the preprocessed canvas, the first-stage map
(``rpn_features_to_crop``), the proposals' crops and the second-stage features
(``box_classifier_features``). objdet builds the model from the dump's ``pipeline.config``,
imports the checkpoint (``full``: every variable must land) and runs its extractor on the
same inputs: the first stage on the preprocessed canvas, the second stage on the OD API's
crops (so the crop op is not part of the comparison). Prints one JSON line per image with
max |Δ| and the reference's mean |value| per map, and appends a table to RESULTS.md.
Exit 0 when every max |Δ| <= ``--tolerance`` x the map's largest |value|.

The TF1 slim extractor (``faster_rcnn_inception_resnet_v2``, atrous stride 8, 'VALID'
second stage) with the same weights:

    python benchmarks/inception_resnet_v2_parity.py --write_slim_weights /tmp/slim_weights.npz
    /tmp/odapi-ref/bin/python benchmarks/odapi_reference/inception_resnet_v2_slim_reference.py \
        --slim_dir PATH/models/research/slim --weights /tmp/slim_weights.npz \
        --inputs /tmp/parity_ref/faster_rcnn_inception_resnet_v2/reference.npz \
        --output_dir /tmp/parity_ref/faster_rcnn_inception_resnet_v2_slim
    python benchmarks/inception_resnet_v2_parity.py \
        --slim_reference /tmp/parity_ref/faster_rcnn_inception_resnet_v2_slim

``--write_slim_weights`` writes the imported weights under the slim variable names
(``slim_variable_map``, TF layout); ``--slim_reference`` builds objdet's slim extractor at the
dump's stride, loads the dump's TF1 checkpoint (``model.ckpt``) through ``slim_variable_map``
(every variable must land, every parameter be filled) and compares as above on the Keras
dump's canvases and crops.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import append_results, describe_machine

DEFAULT_DIR = Path("/tmp/parity_ref/faster_rcnn_inception_resnet_v2")


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def compare(reference: np.ndarray, ours: torch.Tensor) -> dict[str, float]:
    """NHWC reference vs NCHW objdet map: max |Δ|, and the reference's max and mean |value|."""
    values = ours.permute(0, 2, 3, 1).numpy()
    if values.shape != reference.shape:
        raise ValueError(f"shape {values.shape} != the reference's {reference.shape}")
    return {"max_abs": float(np.abs(values - reference).max()),
            "ref_max": float(np.abs(reference).max()),
            "ref_mean": float(np.abs(reference).mean())}


def to_tf_layout(value: np.ndarray, layout: str) -> np.ndarray:
    """The inverse of ``to_torch_layout`` for the layouts this network has."""
    return np.ascontiguousarray(value.transpose(2, 3, 1, 0)) if layout == "conv" else value


def slim_extractor(directory: Path, stride: int) -> torch.nn.Module:
    """objdet's ``faster_rcnn_inception_resnet_v2`` with the TF1 checkpoint of ``directory``."""
    from objdet.models.checkpoints.tf_bundle import TFCheckpoint
    from objdet.models.checkpoints.variable_map import to_torch_layout
    from objdet.models.feature_extractors.faster_rcnn_inception_resnet_v2 import (
        FasterRcnnInceptionResnetV2FeatureExtractor,
    )

    extractor = FasterRcnnInceptionResnetV2FeatureExtractor(
        first_stage_features_stride=stride, second_stage_padding="valid")
    reader = TFCheckpoint.open(directory / "checkpoint" / "model.ckpt")
    variable_map = extractor.slim_variable_map()
    keys = {key for key in reader if not key.startswith("_")}
    trained = {name for name, parameter in extractor.named_parameters() if parameter.requires_grad}
    trained |= {name for name, _ in extractor.named_buffers()
                if name.endswith(("running_mean", "running_var"))}
    problems = {"not in the checkpoint": sorted(set(variable_map) - keys),
                "not in the map": sorted(keys - set(variable_map)),
                "parameters not filled": sorted(trained - {t.name for t in variable_map.values()})}
    if any(problems.values()):
        raise SystemExit(f"slim variable map: {problems}")
    state = extractor.state_dict()
    with torch.no_grad():
        for key, target in variable_map.items():
            state[target.name].copy_(torch.from_numpy(
                to_torch_layout(reader.read(key), target.layout).copy()))
    return extractor.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference_dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="max |Δ| allowed, relative to the map's largest |value|")
    parser.add_argument("--no_results", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--write_slim_weights", type=Path, default=None,
                        help="also write the imported weights under their slim names (.npz)")
    parser.add_argument("--slim_reference", type=Path, default=None,
                        help="compare the slim extractor with this slim reference dump")
    parser.add_argument("--slim_stride", type=int, default=8)
    args = parser.parse_args()

    from objdet import config as cfg
    from objdet.models import build_model
    from objdet.models.checkpoints.importer import load_tf2_checkpoint

    started = time.perf_counter()
    model = build_model(cfg.load(args.reference_dir / "pipeline.config").model)
    report = load_tf2_checkpoint(model, args.reference_dir / "checkpoint" / "ckpt-0", "full")
    print(report.summary(), flush=True)
    extractor = model.feature_extractor  # type: ignore[union-attr]
    extractor.eval()
    if args.write_slim_weights is not None:
        state = extractor.state_dict()
        np.savez(args.write_slim_weights, **{
            key: to_tf_layout(state[target.name].numpy(), target.layout)
            for key, target in extractor.slim_variable_map().items()})
        print(f"wrote {args.write_slim_weights}")
    inputs = np.load(args.reference_dir / "reference.npz")
    reference = inputs
    variant = "faster_rcnn_inception_resnet_v2_keras (stride 16, Mixed_7a 'SAME')"
    if args.slim_reference is not None:
        extractor = slim_extractor(args.slim_reference, args.slim_stride)
        reference = np.load(args.slim_reference / "reference.npz")
        variant = (f"faster_rcnn_inception_resnet_v2 (TF1 slim, stride {args.slim_stride}, "
                   "Mixed_7a 'VALID'; TF1 checkpoint through slim_variable_map)")
    rows, ok = [], True
    index = 0
    while f"rpn_features_{index}" in reference:
        with torch.no_grad():
            first = extractor.extract_proposal_features(nchw(inputs[f"preprocessed_{index}"]))
            second = extractor.extract_box_classifier_features(
                nchw(inputs[f"cropped_features_{index}"]))
        result = {"image": index,
                  "first_stage": compare(reference[f"rpn_features_{index}"], first),
                  "box_classifier": compare(reference[f"box_classifier_features_{index}"],
                                            second)}
        image_ok = all(level["max_abs"] <= args.tolerance * level["ref_max"]
                       for level in (result["first_stage"], result["box_classifier"]))
        ok &= image_ok
        print(json.dumps({**result, "ok": image_ok}), flush=True)
        rows.append(
            f"| {index} | {tuple(first.shape)} | {result['first_stage']['max_abs']:.2g} "
            f"(mean \\|x\\| {result['first_stage']['ref_mean']:.3g}, max {result['first_stage']['ref_max']:.3g}) "
            f"| {tuple(second.shape)} | {result['box_classifier']['max_abs']:.2g} "
            f"(mean \\|x\\| {result['box_classifier']['ref_mean']:.3g}, max {result['box_classifier']['ref_max']:.3g}) "
            f"| {'yes' if image_ok else 'no'} |")
        index += 1
    elapsed = time.perf_counter() - started
    if not args.no_results:
        body = (
            f"`python benchmarks/inception_resnet_v2_parity.py --reference_dir "
            f"{args.reference_dir}"
            + (f" --slim_reference {args.slim_reference}" if args.slim_reference else "")
            + f"` ({elapsed:.0f} s): {variant}. Reference: "
            "`benchmarks/odapi_reference/inception_resnet_v2_reference.py` (the OD API's "
            "`faster_rcnn_inception_resnet_v2_keras`, full width, stride 16, mask_rcnn_"
            "inception_resnet_v2_1024x1024 config with a 320x320 canvas, 8 proposals, "
            "realistic seeded weights; with `--slim_reference`, the OD API's slim extractor "
            "on the same weights, `inception_resnet_v2_slim_reference.py`). objdet imported "
            "the checkpoint and ran "
            "the first stage on the OD API's preprocessed canvas, the second stage on the OD "
            f"API's crops. ok: max |Δ| <= {args.tolerance:g} x the map's max |value|. Machine: "
            f"{describe_machine()}.\n\n"
            "| image | first stage (NCHW) | max \\|Δ\\| | box classifier features (NCHW) "
            "| max \\|Δ\\| | ok |\n| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))
        append_results("Inception-ResNet v2 Faster R-CNN extractor parity (objdet vs the OD "
                       f"API's {'slim' if args.slim_reference else 'Keras'} extractor)", body)
    return 0 if ok and index > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

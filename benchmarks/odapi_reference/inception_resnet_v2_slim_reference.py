"""The OD API's TF1 slim ``faster_rcnn_inception_resnet_v2`` extractor, run on given weights:
the slim side of ``benchmarks/inception_resnet_v2_parity.py --slim``.

    /tmp/odapi-ref/bin/python benchmarks/odapi_reference/inception_resnet_v2_slim_reference.py \\
        --slim_dir PATH/models/research/slim --weights slim_weights.npz \\
        --inputs /tmp/parity_ref/faster_rcnn_inception_resnet_v2/reference.npz \\
        --output_dir /tmp/parity_ref/faster_rcnn_inception_resnet_v2_slim [--stride 8]

The extractor (``faster_rcnn_inception_resnet_v2_feature_extractor.py``) imports
``nets.inception_resnet_v2`` from tensorflow/models ``research/slim``, which the reference
environment does not install: ``--slim_dir`` is the folder holding that ``nets`` package.

TF1 graph mode: the first stage (scope ``FirstStageFeatureExtractor``) on each
``preprocessed_i`` of ``--inputs`` and the second stage (``SecondStageFeatureExtractor``) on
each ``cropped_features_i``, ``is_training=False`` (batch norms with
``updates_collections=None``: the same inference math, see the comment in ``main``). Every graph variable takes the array of
``--weights`` under its name (TF layout); a variable without one, or an array no variable
takes, is an error (exit 2) naming them. Writes ``checkpoint/model.ckpt.*`` (``tf.train.Saver``,
as the TF1 zoo's checkpoints) and ``reference.npz`` with ``rpn_features_i`` and
``box_classifier_features_i`` (NHWC).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT.parent / "shared" / "odapi-reference"))
import odapi  # noqa: F401  (sets the environment for the OD API)

# isort: split
import numpy as np
import tensorflow.compat.v1 as tf
from tensorflow.python.framework import ops as tf_ops

if not hasattr(tf_ops, "Tensor"):  # removed in TF 2.21; tf_slim's layers still test for it
    tf_ops.Tensor = tf.Tensor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slim_dir", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--stride", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(args.slim_dir))
    from object_detection.models import faster_rcnn_inception_resnet_v2_feature_extractor as fe

    # tf_slim's batch_norm with updates_collections=UPDATE_OPS goes through the Keras layer
    # this environment's tf-keras lacks (legacy_tf_layers); with None it normalizes itself.
    # With is_training=False both compute (x - moving_mean) / sqrt(moving_variance + eps) + beta.
    fe.inception_resnet_v2.inception_resnet_v2_arg_scope = functools.partial(
        fe.inception_resnet_v2.inception_resnet_v2_arg_scope,
        batch_norm_updates_collections=None)

    tf.disable_eager_execution()
    inputs = np.load(args.inputs)
    weights = dict(np.load(args.weights))
    count = sum(1 for key in inputs if key.startswith("preprocessed_"))
    graph = tf.Graph()
    with graph.as_default():
        extractor = fe.FasterRCNNInceptionResnetV2FeatureExtractor(
            is_training=False, first_stage_features_stride=args.stride)
        images = tf.placeholder(tf.float32, [None, None, None, 3])
        crops = tf.placeholder(tf.float32, [None, None, None, 1088])
        first, _ = extractor.extract_proposal_features(images, scope="FirstStageFeatureExtractor")
        second = extractor.extract_box_classifier_features(
            crops, scope="SecondStageFeatureExtractor")
        variables = {variable.op.name: variable for variable in tf.global_variables()}
        missing = sorted(set(variables) - set(weights))
        unused = sorted(set(weights) - set(variables))
        if missing or unused:
            print(f"variables without weights ({len(missing)}): {missing[:8]}; weights no "
                  f"variable takes ({len(unused)}): {unused[:8]}", file=sys.stderr)
            return 2
        saver = tf.train.Saver(variables)
        # One assign per variable, all run at once (a session.run each takes minutes here).
        values = {name: tf.placeholder(variable.dtype.base_dtype, variable.shape)
                  for name, variable in variables.items()}
        assign = tf.group(*(variable.assign(values[name]) for name, variable in variables.items()))
        with tf.Session(graph=graph) as session:
            session.run(assign, {values[name]: weights[name] for name in variables})
            arrays = {}
            for index in range(count):
                arrays[f"rpn_features_{index}"] = session.run(
                    first, {images: inputs[f"preprocessed_{index}"]})
                arrays[f"box_classifier_features_{index}"] = session.run(
                    second, {crops: inputs[f"cropped_features_{index}"]})
                print(index, {key: value.shape for key, value in arrays.items()
                              if key.endswith(f"_{index}")})
            args.output_dir.mkdir(parents=True, exist_ok=True)
            saver.save(session, str(args.output_dir / "checkpoint" / "model.ckpt"))
    np.savez_compressed(args.output_dir / "reference.npz", **arrays)
    print(f"{len(variables)} variables")
    return 0


if __name__ == "__main__":
    sys.exit(main())

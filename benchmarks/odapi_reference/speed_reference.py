"""The OD API's TF2 model speed on the CPU, for benchmarks/model_speed.py (run in the ref env).

    /tmp/odapi-ref/bin/python benchmarks/odapi_reference/speed_reference.py CONFIG \\
        --threads 2 [--seed 0]

Builds the config's model with ``odapi.build`` (is_training=False, random initial weights,
as no zoo checkpoint is at hand) and wraps preprocess + predict + postprocess in one
``tf.function`` on a ``uint8 [1, H, W, 3]`` image, as the OD API's exporter
(exporter_lib_v2.DetectionInferenceModule) does. The image is ``numpy`` RandomState(seed)
pixels at the config's resolution, the same pixels model_speed.py gives objdet.

Protocol (one JSON object per stdout line), so that model_speed.py can interleave rounds of
TF and objdet timings under the same load:
  first line:  {"ready": true, "tf_version", "params", "height", "width", "num_detections"}
  then, for each line "N" read on stdin: {"ms": [N per-image times in milliseconds]}
  (an empty line or end of input ends the process).
TF's intra-op and inter-op thread pools both get ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ODAPI_REFERENCE = os.path.join(HERE, "..", "..", "..", "shared", "odapi-reference")


def config_resolution(configs: dict) -> tuple[int, int]:
    """(height, width) of the model's fixed_shape_resizer, or the keep_aspect_ratio_resizer's
    max_dimension square."""
    model = configs["model"]
    resizer = getattr(model, model.WhichOneof("model")).image_resizer
    kind = resizer.WhichOneof("image_resizer_oneof")
    if kind == "fixed_shape_resizer":
        return resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width
    if kind == "keep_aspect_ratio_resizer":
        side = resizer.keep_aspect_ratio_resizer.max_dimension
        return side, side
    raise SystemExit(f"{kind}: no fixed resolution to benchmark at")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sys.path.insert(0, os.path.abspath(ODAPI_REFERENCE))
    import numpy as np
    import odapi
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.random.set_seed(args.seed)
    model, configs = odapi.build(args.config, is_training=False)
    height, width = config_resolution(configs)
    pixels = np.random.RandomState(args.seed).randint(0, 256, (1, height, width, 3)).astype(np.uint8)
    image = tf.constant(pixels)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
    def detect(images: tf.Tensor) -> dict:
        preprocessed, true_shapes = model.preprocess(tf.cast(images, tf.float32))
        predictions = model.predict(preprocessed, true_shapes)
        return model.postprocess(predictions, true_shapes)

    detections = detect(image)  # traces, builds the variables
    params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    print(json.dumps({"ready": True, "tf_version": tf.__version__, "params": params,
                      "height": height, "width": width,
                      "num_detections": int(detections["num_detections"][0])}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            detections = detect(image)
            detections["num_detections"].numpy()  # wait for the result
            times.append((time.perf_counter() - start) * 1000.0)
        print(json.dumps({"ms": times}), flush=True)


if __name__ == "__main__":
    main()

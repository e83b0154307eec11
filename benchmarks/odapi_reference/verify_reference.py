"""Checks a dump_reference.py output directory against a fresh OD API model (reference env only).

    /tmp/odapi-ref/bin/python benchmarks/odapi_reference/verify_reference.py DIR [DIR...]

Builds the model again from DIR/pipeline.config, restores DIR/checkpoint/ckpt-0 (every model
variable must be matched), feeds each DIR/reference.npz image_i and prints the largest absolute
difference per array. It proves the checkpoint and pipeline.config alone reproduce the dumped
outputs (nothing the outputs depend on lives outside the checkpoint). Exit status 1 on a
difference above 1e-5 relative to the array's largest value, or a key set that differs.
"""

from __future__ import annotations

import argparse
import os
import sys
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
from dump_reference import run_image

RELATIVE_TOLERANCE = 1e-5


def verify(directory: Path) -> bool:
    reference = np.load(directory / "reference.npz")
    model, _ = odapi.build(str(directory / "pipeline.config"))
    num_images = sum(key.startswith("image_") for key in reference.files)
    first = reference["image_0"]
    model.predict(*model.preprocess(tf.cast(tf.constant(first[None]), tf.float32)))  # build
    status = tf.train.Checkpoint(model=model).read(str(directory / "checkpoint" / "ckpt-0"))
    status.assert_existing_objects_matched().expect_partial()  # save_counter: not a model value
    arrays: dict[str, np.ndarray] = {}
    for index in range(num_images):
        arrays.update(run_image(model, reference[f"image_{index}"], index))
    ok = set(reference.files) <= set(arrays)  # dump_reference.py --omit may leave some out
    if not ok:
        print(f"{directory}: unexpected keys: {sorted(set(reference.files) - set(arrays))}")
    worst = 0.0
    for key in sorted(set(reference.files) & set(arrays)):
        expected, actual = reference[key], arrays[key]
        if expected.shape != actual.shape:
            print(f"{directory}: {key} shape {actual.shape} != {expected.shape}")
            ok = False
            continue
        scale = max(float(np.abs(expected).max()), 1e-12) if expected.size else 1.0
        difference = (
            float(np.abs(actual.astype(np.float64) - expected).max()) if expected.size else 0.0
        )
        worst = max(worst, difference / scale)
        if difference > RELATIVE_TOLERANCE * scale:
            print(f"{directory}: {key} max abs difference {difference:.3g} (scale {scale:.3g})")
            ok = False
    print(
        f"{directory}: {'ok' if ok else 'FAILED'}, {len(reference.files)} arrays, worst relative {worst:.3g}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directories", nargs="+", type=Path)
    args = parser.parse_args()
    results = [verify(directory) for directory in args.directories]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

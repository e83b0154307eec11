"""``objdet infer-detections --runtime program``: detector.pt2 over TFRecords, batched."""

from __future__ import annotations

from pathlib import Path

import infer_inputs
import numpy as np
import pytest
from infer_inputs import filename

from objdet.cli.main import main
from objdet.data.example import DETECTION_KEYS
from objdet.inference.predictor import ProgramPredictor
from objdet.structures.detections import Detections


def test_program_runtime_writes_the_records_of_the_torch_runtime(
    exported_image_tensor: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The program in batches of up to 4 (size changes inside; the batches seen by its
    ``predict_batch`` are recorded) and the torch runtime (one image at a time, the model's
    own pre/post-processing): every input feature the same bytes, the same detections within
    1e-4."""
    inputs = infer_inputs.write_inputs(tmp_path, counts=(7, 4))
    batch_sizes: list[int] = []
    predict_batch = ProgramPredictor.predict_batch

    def recorded(self: ProgramPredictor, images: np.ndarray) -> list[Detections]:
        batch_sizes.append(len(images))
        return predict_batch(self, images)

    monkeypatch.setattr(ProgramPredictor, "predict_batch", recorded)
    written = {}
    for runtime in ("torch", "program"):
        output = tmp_path / f"{runtime}.record"
        assert main(["infer-detections", "--input_tfrecord_paths", f"{tmp_path / 'input'}@2",
                     "--output_tfrecord_path", str(output), "--model", str(exported_image_tensor),
                     "--runtime", runtime, "--batch_size", "4"]) == 0
        written[runtime] = infer_inputs.examples(output)
    # sizes (40, 56) x5, (48, 64) x3, (40, 56) x3: batches end at 4 images or a size change
    assert batch_sizes == [4, 1, 3, 3]
    originals = infer_inputs.examples(inputs)
    assert len(written["program"]) == len(written["torch"]) == len(originals) == 11
    for original, eager, program in zip(originals, written["torch"], written["program"], strict=True):
        assert filename(eager) == filename(program) == filename(original)
        assert infer_inputs.input_features(program) == infer_inputs.input_features(original)
        assert infer_inputs.input_features(eager) == infer_inputs.input_features(original)
        for key in DETECTION_KEYS:
            values = [np.asarray(example.features.feature[key].float_list.value
                                 or example.features.feature[key].int64_list.value)
                      for example in (eager, program)]
            assert values[0].shape == values[1].shape and values[0].size > 0
            np.testing.assert_allclose(values[1], values[0], atol=1e-4, rtol=0, err_msg=key)

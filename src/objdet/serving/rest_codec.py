"""TF Serving's REST predict JSON: requests -> images, detections -> responses.

Request (https://www.tensorflow.org/tfx/serving/api_rest#predict_api)::

    {"signature_name": "serving_default",            # optional
     "instances": [<image>, {"input_tensor": <image>}, ...]}   # row format, or
     "inputs": [<image>, ...] | {"input_tensor": [<image>, ...]}}   # columnar format
     "output_filter": ["detection_boxes", ...]}      # optional (objdet's, as gRPC's)

An ``<image>`` is ``{"b64": "<base64 JPEG/PNG or tf.Example>"}`` for string inputs, nested
lists ``[H][W][3]`` of 0..255 for image_tensor. Response: ``{"predictions": [{output name:
value per image}, ...]}`` for the row format, ``{"outputs": {name: [value per image]}}`` for
the columnar one, with the OD API's outputs (detection_boxes normalized ymin, xmin, ymax,
xmax; detection_scores; detection_classes; num_detections; and detection_masks,
detection_keypoints, detection_keypoint_scores where the model has them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import torch

from objdet.export.signature import INPUT_NAME, SIGNATURE_NAME
from objdet.serving.errors import invalid_argument
from objdet.serving.images import image_from_json, image_from_pixels, pixels_batch_from_json
from objdet.structures.detections import Detections


@dataclass
class RestPredictRequest:
    images: list[torch.Tensor]  # uint8 [3, H, W] each
    row_format: bool  # "instances" (answered with "predictions") or "inputs" ("outputs")
    # objdet's extension, as gRPC's PredictRequest.output_filter: only these outputs (all if empty)
    output_filter: tuple[str, ...] = ()


def parse_predict_request(body: bytes, input_type: str) -> RestPredictRequest:
    """The images of a predict request body; INVALID_ARGUMENT ``ServingError`` if malformed."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise invalid_argument(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict):
        raise invalid_argument("JSON Value: the request body is not a JSON object")
    signature_name = request.get("signature_name", SIGNATURE_NAME)
    if signature_name != SIGNATURE_NAME:
        raise invalid_argument(f'Serving signature name: "{signature_name}" not found in '
                               f'signature def (it has "{SIGNATURE_NAME}")')
    if ("instances" in request) == ("inputs" in request):
        raise invalid_argument("Missing 'inputs' or 'instances' key" if "inputs" not in request
                               else "Not formatted correctly expecting only one of 'inputs' "
                               "or 'instances' keys exists")
    if "instances" in request:
        images = _row_images(request["instances"], input_type)
        row_format = True
    else:
        images = _columnar_images(request["inputs"], input_type)
        row_format = False
    if not images:
        raise invalid_argument("the request holds no image (empty instances/inputs)")
    output_filter = request.get("output_filter", [])
    if not isinstance(output_filter, list) or not all(isinstance(name, str) for name in output_filter):
        raise invalid_argument("'output_filter' must be a JSON list of output names")
    return RestPredictRequest(images, row_format, tuple(output_filter))


def _row_images(instances: Any, input_type: str) -> list[torch.Tensor]:
    if not isinstance(instances, list):
        raise invalid_argument("'instances' must be a JSON list, one element per image")
    return [image_from_json(_named_value(value, f"instances[{index}]"), input_type,
                            f"instances[{index}]")
            for index, value in enumerate(instances)]


def _columnar_images(inputs: Any, input_type: str) -> list[torch.Tensor]:
    value = _named_value(inputs, "inputs")
    if input_type == "image_tensor":
        return [image_from_pixels(pixels, f"inputs[{index}]")
                for index, pixels in enumerate(pixels_batch_from_json(value, "inputs"))]
    values = value if isinstance(value, list) else [value]
    return [image_from_json(item, input_type, f"inputs[{index}]") for index, item in enumerate(values)]


def _named_value(value: Any, source: str) -> Any:
    """``{"input_tensor": v}`` -> v; a value that is not such an object is the input itself."""
    if isinstance(value, dict) and "b64" not in value:
        unknown = sorted(set(value) - {INPUT_NAME})
        if unknown or INPUT_NAME not in value:
            raise invalid_argument(f"{source}: input names {unknown or sorted(value)} not in the "
                                   f"signature; it has one input, {INPUT_NAME!r}")
        return value[INPUT_NAME]
    return value


def batched_outputs(detections: list[Detections], max_detections: int) -> dict[str, np.ndarray]:
    """The OD API's output tensors for a batch: boxes ``float32 [B, max, 4]``, scores and
    classes ``[B, max]``, num_detections ``[B]``, and the masks / keypoints outputs
    (``[B, max, ...]``) the detections have (all of one model version: the same ones)."""
    per_image = [found.to_outputs(max_detections) for found in detections]
    return {name: np.concatenate([outputs[name] for outputs in per_image]) for name in per_image[0]}


def predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> bytes:
    """The JSON body: ``predictions`` (one object per image) or ``outputs`` (one list per name),
    with every output of ``outputs`` (a gRPC-style filter is applied by the caller)."""
    if row_format:
        count = len(outputs["num_detections"])
        body: dict[str, Any] = {"predictions": [
            {name: values[index] for name, values in outputs.items()} for index in range(count)]}
    else:
        body = {"outputs": outputs}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

"""objdet's state as TF Serving's messages: signature metadata, model status, tensors.

Both front ends answer with these protos: gRPC sends them, REST prints them as JSON the way
TF Serving does (field names as in the .proto, every field present, int64 as strings).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from google.protobuf import json_format

from objdet.export.signature import INPUT_NAME, SIGNATURE_NAME
from objdet.serving.errors import Code, invalid_argument
from objdet.serving.images import image_from_bytes, image_from_pixels
from objdet.serving.manager import VersionStatus
from objdet.serving.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    meta_graph_pb2,
    model_pb2,
    tensor_pb2,
)
from objdet.serving.servable import SignatureInfo

PREDICT_METHOD = "tensorflow/serving/predict"
DataType = tensor_pb2.DataType
_DTYPES = {"uint8": DataType.DT_UINT8, "string": DataType.DT_STRING, "float32": DataType.DT_FLOAT}


def signature_def_map(signature: SignatureInfo) -> get_model_metadata_pb2.SignatureDefMap:
    """``serving_default``: input_tensor (uint8 [-1, -1, -1, 3] or string [-1]: any number of
    images per request) -> the OD API outputs with a batch dimension (the four box outputs,
    then masks / keypoints where the model has them)."""
    input_shape = [-1, -1, -1, 3] if signature.input_dtype == "uint8" else [-1]
    definition = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    definition.inputs[INPUT_NAME].CopyFrom(
        _tensor_info(f"serving_default_{INPUT_NAME}:0", signature.input_dtype, input_shape))
    for index, (name, shape) in enumerate(signature.output_shapes().items()):
        definition.outputs[name].CopyFrom(
            _tensor_info(f"StatefulPartitionedCall:{index}", "float32", shape))
    result = get_model_metadata_pb2.SignatureDefMap()
    result.signature_def[SIGNATURE_NAME].CopyFrom(definition)
    return result


def _tensor_info(name: str, dtype: str, shape: list[int]) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=name, dtype=_DTYPES[dtype])
    for size in shape:
        info.tensor_shape.dim.add(size=size)
    return info


def metadata_response(name: str, version: int, signature: SignatureInfo,
                      ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec(name, version))
    response.metadata["signature_def"].Pack(signature_def_map(signature))
    return response


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict[str, object]:
    """TF Serving's REST metadata: the Any unpacked to ``{"signature_def": {...}}``."""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return {"model_spec": to_json(response.model_spec),
            "metadata": {"signature_def": to_json(signatures)}}


def status_response(statuses: list[VersionStatus]) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    State = get_model_status_pb2.ModelVersionStatus.State
    for status in statuses:
        entry = response.model_version_status.add(version=status.version,
                                                  state=State.Value(status.state))
        entry.status.error_code = status.error_code  # type: ignore[assignment]
        entry.status.error_message = status.error_message
    return response


def model_spec(name: str, version: int, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


def to_json(message: object) -> dict[str, object]:
    return json_format.MessageToDict(  # type: ignore[no-any-return]
        message, preserving_proto_field_name=True,  # type: ignore[arg-type]
        always_print_fields_with_no_presence=True)


def error_code_name(code: int) -> str:
    return str(Code.Name(code))  # type: ignore[arg-type]


# -- tensors ---------------------------------------------------------------------------------
def images_from_tensor(tensor: tensor_pb2.TensorProto, input_type: str, source: str,
                       ) -> list[torch.Tensor]:
    """A ``TensorProto`` input -> images: ``string_val`` (DT_STRING [B]) of encoded images or
    tf.Examples; DT_UINT8 ``[B, H, W, 3]`` in ``tensor_content`` or ``int_val``."""
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    expected = DataType.DT_UINT8 if input_type == "image_tensor" else DataType.DT_STRING
    if tensor.dtype != expected:
        raise invalid_argument(f"{source}: Expects arg[0] to be {_dtype_name(expected)} but "
                               f"{_dtype_name(tensor.dtype)} is provided")
    if expected == DataType.DT_STRING:
        values = list(tensor.string_val)
        if shape and math.prod(shape) != len(values):
            raise invalid_argument(f"{source}: shape {shape} but {len(values)} string_val values")
        return [image_from_bytes(value, input_type, f"{source}[{index}]")
                for index, value in enumerate(values)]
    if tensor.tensor_content:
        pixels = np.frombuffer(tensor.tensor_content, np.uint8)
    else:
        pixels = np.asarray(tensor.int_val, np.int64)
    if not shape or math.prod(shape) != pixels.size:
        raise invalid_argument(f"{source}: tensor_shape {shape} does not match its "
                               f"{pixels.size} values")
    pixels = pixels.reshape(shape)
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4:
        raise invalid_argument(f"{source}: expected uint8 [B, H, W, 3], got shape {shape}")
    return [image_from_pixels(image, f"{source}[{index}]") for index, image in enumerate(pixels)]


def tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A float32 output as TF Serving sends it (values in ``float_val``)."""
    tensor = tensor_pb2.TensorProto(dtype=DataType.DT_FLOAT)
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=int(size))
    tensor.float_val.extend(np.asarray(array, np.float32).ravel().tolist())
    return tensor


def _dtype_name(dtype: int) -> str:
    return str(DataType.Name(dtype)).removeprefix("DT_").lower()  # type: ignore[arg-type]

"""A TensorFlow Serving client built from tensorflow-serving-api, run against ``objdet serve``
(reference env; not a pytest module: objdet's tests never import TensorFlow).

    /tmp/odapi-ref/bin/python tests/serving/tf_serving_client.py /tmp/tfs/pkg \
        127.0.0.1:8500 detector image.jpg

It is the client OD API users point at TF Serving (the Prodigy recipe's): Predict with
tf.make_tensor_proto([jpeg bytes]), then reading ``outputs[...].float_val``; and the
GetModelMetadata / GetModelStatus calls. Prints what it got as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])  # the unpacked tensorflow-serving-api wheel

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def main() -> None:
    target, model, image = sys.argv[2], sys.argv[3], Path(sys.argv[4])
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    request.inputs["input_tensor"].CopyFrom(tf.make_tensor_proto([image.read_bytes()]))
    response = stub.Predict(request, 30.0)
    count = int(response.outputs["num_detections"].float_val[0])
    boxes = tf.make_ndarray(response.outputs["detection_boxes"])
    metadata = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=request.model_spec, metadata_field=["signature_def"]), 10.0)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=request.model_spec), 10.0)
    try:
        stub.Predict(predict_pb2.PredictRequest(model_spec={"name": "no-such-model"}), 10.0)
        error = None
    except grpc.RpcError as raised:
        error = raised.code().name
    print(json.dumps({
        "version": response.model_spec.version.value,
        "num_detections": count,
        "boxes_shape": list(boxes.shape),
        "first_box": boxes[0, 0].tolist(),
        "first_score": response.outputs["detection_scores"].float_val[0],
        "signature_inputs": {name: tf.dtypes.as_dtype(info.dtype).name for name, info in
                             signatures.signature_def["serving_default"].inputs.items()},
        "status": [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
                   for s in status.model_version_status],
        "unknown_model_error": error,
    }))


if __name__ == "__main__":
    main()

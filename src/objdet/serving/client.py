"""``Client``: talk to ``objdet serve`` (or TensorFlow Serving) over REST or gRPC.

    client = Client("http://127.0.0.1:8501")      # REST; "grpc://127.0.0.1:8500" for gRPC
    client = Client("grpcs://host:8500", root_certificates=ca_pem)   # gRPC over TLS
    outputs = client.predict("detector", [jpeg_bytes, png_bytes])   # one dict per image
    detections = client.detect("detector", jpeg_bytes)              # objdet Detections
    client.status("detector"); client.metadata("detector")

Images are sent as the model's signature wants them, found with ``metadata``: file bytes
(``{"b64": ...}`` / ``string_val``) for string inputs, uint8 pixels for image_tensor
(pass ``uint8 [H, W, 3]`` arrays, or bytes to have them decoded here first).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import numpy as np

from objdet.errors import ObjdetError
from objdet.serving.errors import Code, ServingError

if TYPE_CHECKING:
    from objdet.serving.protos import model_pb2

Image = bytes | np.ndarray  # encoded file bytes, or uint8 [H, W, 3] pixels


class Client:
    """REST (``http://host:port``) or gRPC (``grpc://host:port``; ``grpcs://host:port`` over
    TLS, for a server started with ``--ssl_config_file``) client of one server.

    For ``grpcs://``: ``root_certificates`` (PEM) verify the server (None: the system's
    roots); ``private_key`` and ``certificate_chain`` (PEM) are the client's certificate, for
    a server whose ssl config has ``client_verify: true``."""

    def __init__(self, url: str, *, timeout: float = 60.0, root_certificates: bytes | None = None,
                 private_key: bytes | None = None, certificate_chain: bytes | None = None) -> None:
        self.timeout = timeout
        scheme = url.split("://", 1)[0] if "://" in url else ""
        self.grpc = scheme in ("grpc", "grpcs")
        self.url = url.removeprefix(f"{scheme}://").rstrip("/") if self.grpc else url.rstrip("/")
        if not self.grpc and scheme not in ("http", "https"):
            raise ObjdetError(f"server URL {url!r}: expected http://host:port, grpc://host:port or "
                              "grpcs://host:port")
        if scheme != "grpcs" and (root_certificates or private_key or certificate_chain):
            raise ObjdetError(f"server URL {url!r}: certificates are for grpcs:// (gRPC over TLS)")
        if (private_key is None) != (certificate_chain is None):
            raise ObjdetError("a client certificate needs both its private key and its certificate")
        self._input_dtypes: dict[tuple[str, int | None], str] = {}
        if self.grpc:
            import grpc

            from objdet.serving.protos import prediction_service_pb2_grpc as services

            options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
            if scheme == "grpcs":
                credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
                self._channel = grpc.secure_channel(self.url, credentials, options=options)
            else:
                self._channel = grpc.insecure_channel(self.url, options=options)
            self._predict_stub = services.PredictionServiceStub(self._channel)
            self._model_stub = services.ModelServiceStub(self._channel)

    # -- API -------------------------------------------------------------------------------
    def status(self, model: str, version: int | None = None) -> dict[str, Any]:
        """TF Serving's status JSON: ``{"model_version_status": [{version, state, status}]}``."""
        if not self.grpc:
            return self._rest("GET", self._path(model, version))
        from objdet.serving.messages import to_json
        from objdet.serving.protos import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest(model_spec=_spec(model, version))
        return to_json(self._call(self._model_stub.GetModelStatus, request))

    def metadata(self, model: str, version: int | None = None) -> dict[str, Any]:
        """TF Serving's REST metadata JSON (``metadata.signature_def.signature_def``)."""
        if not self.grpc:
            return self._rest("GET", self._path(model, version) + "/metadata")
        from objdet.serving.messages import metadata_json
        from objdet.serving.protos import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=_spec(model, version), metadata_field=["signature_def"])
        return metadata_json(self._call(self._predict_stub.GetModelMetadata, request))

    def predict(self, model: str, images: list[Image], version: int | None = None,
                ) -> list[dict[str, np.ndarray]]:
        """Each image's OD API outputs (boxes ``[max, 4]`` normalized ymin, xmin, ymax, xmax;
        scores, classes ``[max]``; num_detections scalar; masks ``[max, h, w]``, keypoints
        ``[max, K, 2]`` and their scores ``[max, K]`` where the model has them), all images
        in one request."""
        dtype = self._input_dtype(model, version)
        values = [_as_input(image, dtype) for image in images]
        if self.grpc:
            return self._predict_grpc(model, version, values, dtype)
        instances = [{"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v.tolist()
                     for v in values]
        body = self._rest("POST", self._path(model, version) + ":predict", {"instances": instances})
        return [{name: np.asarray(value, np.float32) for name, value in row.items()}
                for row in body["predictions"]]

    def detect(self, model: str, image: Image, version: int | None = None) -> Any:
        """One image's ``objdet.structures.detections.Detections`` (pixel boxes; masks and
        keypoints where the model has them)."""
        from objdet.inference.outputs import detections_from_outputs

        outputs = self.predict(model, [image], version)[0]
        batch = {name: np.asarray(value)[None] for name, value in outputs.items()}  # [1, ...]
        return detections_from_outputs(batch, image_size=_image_size(image))[0]

    # -- transport ---------------------------------------------------------------------------
    def _input_dtype(self, model: str, version: int | None) -> str:
        key = (model, version)
        if key not in self._input_dtypes:
            signature = self.metadata(model, version)["metadata"]["signature_def"]
            inputs = signature["signature_def"]["serving_default"]["inputs"]
            self._input_dtypes[key] = next(iter(inputs.values()))["dtype"]
        return self._input_dtypes[key]

    def _predict_grpc(self, model: str, version: int | None, values: list[Any], dtype: str,
                      ) -> list[dict[str, np.ndarray]]:
        from objdet.serving.protos import predict_pb2, tensor_pb2

        request = predict_pb2.PredictRequest(model_spec=_spec(model, version))
        tensor = request.inputs["input_tensor"]
        if dtype == "DT_STRING":
            tensor.dtype = tensor_pb2.DT_STRING
            tensor.tensor_shape.dim.add(size=len(values))
            tensor.string_val.extend(values)
        else:
            shapes = {value.shape for value in values}
            if len(shapes) != 1:
                raise ObjdetError(f"image_tensor over gRPC: one request takes images of one size, "
                                  f"got {sorted(shapes)}")
            batch = np.stack(values)  # [B, H, W, 3]
            tensor.dtype = tensor_pb2.DT_UINT8
            for size in batch.shape:
                tensor.tensor_shape.dim.add(size=size)
            tensor.tensor_content = batch.tobytes()
        response = self._call(self._predict_stub.Predict, request)
        arrays = {name: np.asarray(proto.float_val, np.float32).reshape(
            [dim.size for dim in proto.tensor_shape.dim]) for name, proto in response.outputs.items()}
        return [{name: array[index] for name, array in arrays.items()} for index in range(len(values))]

    def _call(self, method: Any, request: Any) -> Any:
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingError(error.code().value[0], error.details() or str(error)) from None

    def _path(self, model: str, version: int | None) -> str:
        return f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")

    def _rest(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            try:
                message = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                message = text
            raise ServingError(_code_for_http(error.code), f"HTTP {error.code}: {message}") from None
        except urllib.error.URLError as error:
            raise ServingError(Code.UNAVAILABLE, f"{self.url}: {error.reason}") from None


def _spec(model: str, version: int | None) -> model_pb2.ModelSpec:
    from objdet.serving.protos import model_pb2

    spec = model_pb2.ModelSpec(name=model)
    if version is not None:
        spec.version.value = version
    return spec


def _as_input(image: Image, dtype: str) -> bytes | np.ndarray:
    """Bytes for a string input, ``uint8 [H, W, 3]`` pixels otherwise."""
    if dtype == "DT_STRING":
        if not isinstance(image, (bytes, bytearray)):
            raise ObjdetError("this model takes encoded images: pass the file's bytes")
        return bytes(image)
    if isinstance(image, (bytes, bytearray)):
        from objdet.inference.inputs import decode_image_bytes

        return decode_image_bytes(bytes(image)).permute(1, 2, 0).numpy()
    return np.asarray(image, np.uint8)


def _image_size(image: Image) -> tuple[int, int]:
    if isinstance(image, (bytes, bytearray)):
        from objdet.data.image_decode import read_image_header

        header = read_image_header(bytes(image), "image")
        return header.height, header.width
    return int(image.shape[0]), int(image.shape[1])


def _code_for_http(status: int) -> int:
    return {400: Code.INVALID_ARGUMENT, 404: Code.NOT_FOUND, 413: Code.RESOURCE_EXHAUSTED,
            429: Code.RESOURCE_EXHAUSTED, 501: Code.UNIMPLEMENTED, 503: Code.UNAVAILABLE,
            }.get(status, Code.UNKNOWN)

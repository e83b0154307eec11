"""A TensorFlow-Serving-compatible server for objdet exports (REST and gRPC).

``objdet serve`` (``Server``) serves the numeric version directories under each model's
base path with TF Serving's REST API and its gRPC ``tensorflow.serving`` services; ``Client``
talks to it (or to TensorFlow Serving). Modules:

* ``model_config``: --model_config_file / --batching_parameters_file (TF Serving's formats);
* ``servable``: one loaded, warmed-up export version; ``manager``: version polling, loading,
  unloading and status; ``batching``: dynamic batching;
* ``images``, ``rest_codec``, ``messages``: requests -> images, detections -> responses;
* ``service``: what both front ends do; ``rest``, ``grpc_service``: the front ends;
  ``metrics``: Prometheus; ``server``: startup and graceful shutdown.
"""

from objdet.serving.client import Client

__all__ = ["Client"]

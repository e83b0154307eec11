"""The object graph of a TF2 object-based checkpoint.

``tf.train.Checkpoint`` saves, besides the variables, one DT_STRING scalar under the key
``_CHECKPOINTABLE_OBJECT_GRAPH``: a serialized ``TrackableObjectGraph``. Its nodes are the
saved objects (node 0 the root), their children edges give the checkpoint keys' paths
(``model/_feature_extractor/...``), and each node's ``attributes`` name the tensors it saved:
``checkpoint_key`` (the key in the index) and ``full_name`` (the variable's own name when it
was saved, e.g. ``BoxPredictor/ConvolutionalBoxHead_0/BoxEncodingPredictor/kernel``, what TF1
name-based checkpoints used as keys).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from objdet.errors import CheckpointError
from objdet.protos.trackable_object_graph_pb2 import TrackableObjectGraph

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def parse_object_graph(serialized: bytes, source: str) -> TrackableObjectGraph:
    """The TrackableObjectGraph in ``serialized``; ``source`` names it in errors."""
    graph = TrackableObjectGraph()
    try:
        graph.ParseFromString(serialized)
    except DecodeError as error:
        raise CheckpointError(
            f"{source}: {OBJECT_GRAPH_KEY} is not a TrackableObjectGraph ({error})"
        ) from None
    return graph


def full_names(graph: TrackableObjectGraph) -> dict[str, str]:
    """Checkpoint key -> the full name of the variable (or other tensor) saved under it."""
    return {
        attribute.checkpoint_key: attribute.full_name
        for node in graph.nodes
        for attribute in node.attributes
    }

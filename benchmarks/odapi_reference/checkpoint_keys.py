"""Checkpoint key -> variable description for a TF2 object-based checkpoint (reference env only).

The checkpoint's own object graph (`_CHECKPOINTABLE_OBJECT_GRAPH`) names every saved value by
its key; walking it in step with the Python objects (`_trackable_children`) tells which
`tf.Variable` each key holds, so variables.json can give the Keras name beside the key.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _python_objects(
    root: tf.train.Checkpoint, graph: trackable_object_graph_pb2.TrackableObjectGraph
) -> dict:
    """Node id in the saved object graph -> the live Python object at that node."""
    objects = {0: root}
    queue = [0]
    while queue:
        node_id = queue.pop(0)
        children = objects[node_id]._trackable_children(save_type="checkpoint")
        for reference in graph.nodes[node_id].children:
            if reference.node_id not in objects and reference.local_name in children:
                objects[reference.node_id] = children[reference.local_name]
                queue.append(reference.node_id)
    return objects


def describe_checkpoint(root: tf.train.Checkpoint, prefix: str) -> dict[str, dict]:
    """{checkpoint key: {shape, dtype, variable}} for every value saved under `prefix`;
    `variable` is the tf.Variable's full name (None for values that are not variables)."""
    reader = tf.train.load_checkpoint(prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    objects = _python_objects(root, graph)
    names = {}
    for node_id, node in enumerate(graph.nodes):
        for attribute in node.attributes:
            python_object = objects.get(node_id)
            names[attribute.checkpoint_key] = getattr(python_object, "name", None)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    missing = sorted(key for key in shapes if key != OBJECT_GRAPH_KEY and key not in names)
    if missing:
        raise RuntimeError(f"{prefix}: keys absent from the object graph: {missing[:5]}")
    return {
        key: {"shape": list(shapes[key]), "dtype": dtypes[key].name, "variable": names[key]}
        for key in sorted(shapes)
        if key != OBJECT_GRAPH_KEY
    }

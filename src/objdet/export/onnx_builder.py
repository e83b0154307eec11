"""Building ``model.onnx`` in parts: each part (pre-processing, post-processing, a Faster
R-CNN's proposal and detection stages) is a :class:`GraphPart` whose nodes and constants get
unique names under its prefix; parts meet at graph-wide joint names such as
``RESIZED_SIZE``. See ``objdet.export.onnx_graph`` for the whole graph."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

RESIZED_SIZE = "resized_size"  # int64 [2]: (h, w) of the images on the canvas


@dataclass
class GraphPart:
    """Nodes and constants of one part of the graph, with unique names."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _count: int = 0

    def op(self, op_type: str, inputs: Sequence[str], outputs: int = 1, **attributes: Any) -> Any:
        """Add a node; its output name (or names when ``outputs > 1``)."""
        self._count += 1
        names = [f"{self.prefix}/{op_type}_{self._count}" + (f":{i}" if outputs > 1 else "")
                 for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names,
                                           name=f"{self.prefix}/{op_type}_{self._count}", **attributes))
        return names[0] if outputs == 1 else names

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        self._count += 1
        name = f"{self.prefix}/const_{self._count}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def name(self, op_type: str, inputs: Sequence[str], output: str, **attributes: Any) -> str:
        """Add a node writing the given ``output`` name (a graph output or a joint)."""
        self._count += 1
        self.nodes.append(helper.make_node(op_type, list(inputs), [output],
                                           name=f"{self.prefix}/{op_type}_{self._count}", **attributes))
        return output

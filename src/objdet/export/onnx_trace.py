"""A torch module -> an ONNX model with a dynamic batch dimension (the network parts of
``model.onnx``: :mod:`objdet.export.onnx_graph`, :mod:`objdet.export.onnx_faster_rcnn`).

torch.onnx has two exporters. The TorchScript one (``dynamo=False``) traces the module once;
with ``onnxscript``'s optimizer after it (constant folding, the fusions the dynamo exporter
applies) its graphs run as fast in ONNX Runtime as the dynamo exporter's, and it exports
several times faster (``benchmarks/onnx_export.py``, RESULTS.md: SSD MobileNet v2 320 and
EfficientDet D0 ran at 0.97x and 1.02x the dynamo graphs' speed and exported in 3.7 s and
9.2 s against 31.8 s and 34.7 s, outputs within 1e-7 of the eager network).
It is tried first; the dynamo exporter (``torch.export`` then ONNX) is the fallback where
tracing fails or is gone from torch.

A trace records the example's shapes where the module turns one into a Python number, so the
result is checked at another batch size: run by ONNX Runtime on the example plus a copy of
its first item, the copy's outputs must equal the first item's. Callers compare the outputs
with the eager module's on the example.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from objdet.errors import ObjdetError

logger = logging.getLogger(__name__)

OPSET = 18  # ScatterElements with reduction "min"/"add"
_BATCH_TOLERANCE = 1e-5  # relative: the same image's outputs at two batch sizes


def trace_to_onnx(module: nn.Module, example: tuple[Tensor, ...], input_names: list[str],
                  output_names: list[str], batched: tuple[bool, ...] | None = None
                  ) -> onnx.ModelProto:
    """``module`` (eval mode, CPU) as an ONNX model whose inputs marked ``batched`` (default:
    all) and every output share a dynamic first dimension; ObjdetError when neither exporter
    gives a graph that keeps the batch dimension dynamic."""
    module = module.eval()
    batched = batched if batched is not None else tuple(True for _ in example)
    failures = []
    for exporter in (_torchscript_export, _dynamo_export):
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                proto = exporter(module, example, input_names, output_names, batched)
        except Exception as error:  # noqa: BLE001 - torch.onnx raises many types
            text = str(error).strip()
            problem = f"{type(error).__name__}: {text.splitlines()[0][:200] if text else ''}"
        else:
            batch_problem = _batch_problem(proto, example, input_names, batched)
            if batch_problem is None:
                return proto
            problem = batch_problem
        failures.append(f"{exporter.__name__.strip('_')}: {problem}")
        logger.info("ONNX export of %s: %s", type(module).__name__, failures[-1])
    raise ObjdetError(f"ONNX export: {type(module).__name__} cannot be exported with a dynamic "
                      f"batch ({'; '.join(failures)})")


def _torchscript_export(module: nn.Module, example: tuple[Tensor, ...], input_names: list[str],
                        output_names: list[str], batched: tuple[bool, ...]) -> onnx.ModelProto:
    import onnxscript.optimizer

    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name, is_batched in zip(input_names, batched, strict=True)
            if is_batched}
    axes.update({name: {0: "batch"} for name in output_names})
    torch.onnx.export(module, example, buffer,  # type: ignore[arg-type]  # a BytesIO works
                      dynamo=False, input_names=input_names, output_names=output_names,
                      dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True)
    proto: onnx.ModelProto = onnxscript.optimizer.optimize(onnx.load_from_string(buffer.getvalue()))
    return proto


def _dynamo_export(module: nn.Module, example: tuple[Tensor, ...], input_names: list[str],
                   output_names: list[str], batched: tuple[bool, ...]) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        module, example, dynamo=True,
        dynamic_shapes=tuple({0: batch} if is_batched else None for is_batched in batched),
        input_names=input_names, output_names=output_names, opset_version=OPSET, verbose=False)
    assert program is not None
    proto: onnx.ModelProto = program.model_proto
    if len(proto.functions):
        raise ObjdetError("left local functions in its graph; objdet merges inlined graphs only")
    return proto


def _batch_problem(proto: onnx.ModelProto, example: tuple[Tensor, ...], input_names: list[str],
                   batched: tuple[bool, ...]) -> str | None:
    """None when ``proto`` run on ``example`` plus a copy of its first item gives that copy
    the first item's outputs; else what went wrong."""
    feeds = {name: (torch.cat([value, value[:1]]) if is_batched else value).numpy()
             for name, value, is_batched in zip(input_names, example, batched, strict=True)}
    size = int(example[batched.index(True)].shape[0]) + 1
    try:
        outputs = run_onnx(proto, feeds)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own error types
        return f"fails at batch {size} ({type(error).__name__})"
    for output in outputs:
        if output.shape[:1] != (size,):
            return f"an output of shape {output.shape} at batch {size}"
        scale = max(1.0, float(np.abs(output[0]).max())) if output[0].size else 1.0
        if output[0].size and float(np.abs(output[-1] - output[0]).max()) / scale > _BATCH_TOLERANCE:
            return f"the same image gives other outputs at batch {size}"
    return None


def run_onnx(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``proto`` run by ONNX Runtime on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))

"""``detector.pt2``: the whole detector as one ``torch.export`` program, any batch and size.

The program runs with torch and torchvision alone (``torch.export.load(path).module()``; no
objdet import) and computes what ``model.onnx`` computes (see ``objdet.export.onnx_graph``)::

    input_tensor uint8 [B, H, W, 3]  (float32 0..255 for input_type float_image_tensor;
                                      B, H and W dynamic)
      -> /255, resize as the config's image_resizer (TF1's resize, gathers computed as
         ``objdet.models.image_resizers`` computes them, sampled straight onto the canvas),
         the model's pad value past the resized image                 [B, 3, H_c, W_c]
      -> the network, box decoding, score conversion:
         boxes [B, A, 4] (x1, y1, x2, y2 canvas pixels), scores [B, A, C] (no background)
      -> per class, one torchvision ``nms`` over every image's candidates (scores above
         score_threshold; images kept apart by a coordinate offset), the first
         max_detections_per_class survivors of each (image, class) -- or, with
         use_class_agnostic_nms, one ``nms`` over each row's best score and each survivor's
         max_classes_per_detection best classes -- kept boxes clipped to the resized image
         and those left without area dropped, the best max_total_detections of each image
         (``objdet.export.program_nms``)
      -> detection_boxes [B, max, 4] normalized (ymin, xmin, ymax, xmax),
         detection_scores [B, max], detection_classes [B, max] (label-map ids, float),
         num_detections [B] (float); rows past num_detections are zeros.

then, where the model has them, the outputs model.onnx gives after these four (same names,
shapes and dtypes: ``objdet.export.signature``): a Mask R-CNN's ``detection_masks [B, max,
mask_h, mask_w]`` (its mask head on the detections, ``onnx_faster_rcnn.MaskStage``), a
keypoint CenterNet's ``detection_keypoints [B, max, K, 2]`` and ``detection_keypoint_scores
[B, max, K]``.

A CenterNet has no NMS: its peak extraction, box (and keypoint) decoding (static shapes)
follow the same pre-processing. A Faster R-CNN (or R-FCN) runs its first stage, a batched
proposal NMS (the first ``first_stage_max_proposals`` survivors of each image, clipped and
zero-padded: the formulation of ``objdet.export.onnx_faster_rcnn``), its second stage on
the padded proposals, then the per-class NMS over the rows before each image's
``num_proposals`` (and a Mask R-CNN its mask head on the detections). NMS runs over all
candidates of a class, as the eager model's NMS does (its first
``max_detections_per_class`` survivors are the same), so the detections equal the eager
model's; only the sizes after ``nonzero`` and ``nms`` depend on the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from objdet.errors import ConfigError, ObjdetError
from objdet.export.graph import canvas_pad_values, instance_outputs
from objdet.export.program_nms import batched_detections, batched_proposals
from objdet.export.signature import KEYPOINT_SCORES, KEYPOINTS, MASKS
from objdet.models.contract import DetectionModel, as_detection_model
from objdet.models.image_resizers import FixedShapeResizer, KeepAspectRatioResizer
from objdet.models.meta_arch.center_net import CenterNet
from objdet.models.meta_arch.faster_rcnn import FasterRCNN, true_image_shapes
from objdet.models.meta_arch.ssd import SSD
from objdet.models.postprocessing import convert_scores

OUTPUT_NAMES = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
# The program's detections must equal the eager model's this closely (float32 on the CPU;
# boxes normalized).
PROGRAM_TOLERANCE = 1e-4
_INTERPOLATIONS = ("bilinear", "nearest")  # TF1's resize, as image_resizers._legacy_resize
_MAX_BATCH, _MAX_SIDE = 1024, 16384
ProgramOutputs = tuple[Tensor, ...]  # the four detection outputs, then masks or keypoints


def program_unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` has no ``detector.pt2`` yet (None when it has one)."""
    if not isinstance(model, SSD | CenterNet | FasterRCNN):
        return (f"the {type(model).__name__} meta-architecture has no detector program yet "
                "(SSD, EfficientDet, CenterNet, Faster R-CNN and R-FCN do)")
    if model.image_resizer.interpolation not in _INTERPOLATIONS:
        return (f"image_resizer interpolation {model.image_resizer.interpolation!r} has no "
                f"detector program; supported: {', '.join(_INTERPOLATIONS)}")
    return None


class CanvasResize(nn.Module):
    """Pixels ``[B, H, W, 3]`` (0..255) -> the canvas ``[B, 3, H_c, W_c]`` the network sees
    and the resized image's size (float64 ``[2]``: height, width), as ``model.resize_batch``
    computes them for a batch of one size: TF1's resize (output pixel ``i`` samples input
    position ``i * in / out``, float32) rows then columns, the pad value past the image."""

    def __init__(self, model: DetectionModel, canvas_size: tuple[int, int]) -> None:
        super().__init__()
        self.resizer = model.image_resizer
        self.canvas_size = canvas_size
        self.register_buffer("pad_value", torch.tensor(canvas_pad_values(model, canvas_size)).view(3, 1, 1))

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        images = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # [B, 3, H, W] in [0, 1]
        height, width = images.shape[2], images.shape[3]
        resized = self.resized_size(height, width)  # float64 [2]
        canvas_height, canvas_width = self.canvas_size
        rows, row_inside = _sample(images, 2, height, resized[0], canvas_height, self.resizer.interpolation)
        canvas, column_inside = _sample(rows, 3, width, resized[1], canvas_width, self.resizer.interpolation)
        inside = row_inside[:, None] & column_inside[None, :]  # [H_c, W_c]
        pad_value: Tensor = self.pad_value  # type: ignore[assignment]
        return torch.where(inside, canvas, pad_value), resized

    def resized_size(self, height: torch.SymInt | int, width: torch.SymInt | int) -> Tensor:
        """float64 ``[2]``: (height, width) an image of ``height x width`` is resized to, as
        the resizer's ``output_size`` (float64, rounding half to even as Python's round)."""
        if isinstance(self.resizer, FixedShapeResizer):
            return torch.tensor([self.resizer.height, self.resizer.width], dtype=torch.float64)
        if not isinstance(self.resizer, KeepAspectRatioResizer):
            raise ConfigError(f"detector program: image resizer {type(self.resizer).__name__} "
                              "is not supported")
        size = torch.stack([torch.scalar_tensor(height, dtype=torch.float64),
                            torch.scalar_tensor(width, dtype=torch.float64)])
        # divisions as Tensor / Tensor: a constant divided by a tensor is traced as a
        # reciprocal and a product, which can round differently from Python's division
        min_dimension = torch.tensor(float(self.resizer.min_dimension), dtype=torch.float64)
        max_dimension = torch.tensor(float(self.resizer.max_dimension), dtype=torch.float64)
        first = torch.round(size * (min_dimension / size.min()))
        second = torch.round(size * (max_dimension / size.max()))
        return torch.where(first.max() > max_dimension, second, first)


def _sample(images: Tensor, axis: int, in_size: torch.SymInt | int, out_size: Tensor,
            canvas_extent: int, interpolation: str) -> tuple[Tensor, Tensor]:
    """Resample ``images`` along ``axis`` (2: rows, 3: columns) from ``in_size`` to
    ``out_size`` (float64 scalar tensor) pixels, written into ``canvas_extent`` pixels ->
    the resampled images and ``inside`` bool ``[canvas_extent]`` (pixel < out_size)."""
    in_length = torch.scalar_tensor(in_size, dtype=torch.float64)
    scale = (in_length / out_size).to(torch.float32)  # in / out, rounded once to float32
    steps = torch.arange(canvas_extent, dtype=torch.float32)
    positions = steps * scale  # [canvas_extent]
    last = in_length.to(torch.int64) - 1
    first_index = positions.floor()
    lower = torch.minimum(first_index.to(torch.int64), last)
    lower_values = images.index_select(axis, lower)
    inside = steps < out_size
    if interpolation == "nearest":
        return lower_values, inside
    upper = torch.minimum(lower + 1, last)
    weight = (positions - first_index).to(images.dtype)
    if axis == 2:
        weight = weight[:, None]  # [H_c, 1]
    upper_values = images.index_select(axis, upper)
    return lower_values + (upper_values - lower_values) * weight, inside


class DetectorProgram(nn.Module):
    """The whole detector (module docstring): ``input_tensor [B, H, W, 3]`` -> the four
    detection outputs, then the model's masks or keypoints."""

    def __init__(self, model: nn.Module, canvas_size: tuple[int, int]) -> None:
        super().__init__()
        reason = program_unsupported_reason(model)
        if reason is not None:
            raise ConfigError(f"detector program: {reason}")
        self.model = model
        self.resize = CanvasResize(as_detection_model(model), canvas_size)

    def forward(self, input_tensor: Tensor) -> ProgramOutputs:
        canvas, resized = self.resize(input_tensor)
        if isinstance(self.model, CenterNet):
            return center_net_outputs(self.model, self.model.predict(canvas),
                                      resized.to(torch.int64)[None].expand(canvas.shape[0], 2))
        if isinstance(self.model, FasterRCNN):
            return _faster_rcnn_detections(self.model, canvas, resized, self.resize.canvas_size)
        assert isinstance(self.model, SSD)
        predictions = self.model.predict(canvas)
        boxes = self.model.box_coder.decode(predictions["box_encodings"], predictions["anchors"][None])
        nms = self.model.postprocessor
        scores = convert_scores(predictions["class_logits"], nms.score_converter, nms.logit_scale)
        if nms.background_column:
            scores = scores[..., 1:]
        return batched_detections(boxes, scores, resized, nms)


def _faster_rcnn_detections(model: FasterRCNN, canvas: Tensor, resized: Tensor,
                            canvas_size: tuple[int, int]) -> ProgramOutputs:
    """Both stages of a Faster R-CNN (or R-FCN) joined by the batched proposal NMS, then the
    per-class NMS over each image's rows before its ``num_proposals``; a Mask R-CNN's mask
    head on the detections after it."""
    # the stages model.onnx exports (imported here: loading a program needs no onnx)
    from objdet.export.onnx_faster_rcnn import FirstStage, MaskStage, SecondStage

    features, rpn_boxes, objectness = FirstStage(model)(canvas)  # [B, A, 4], [B, A]
    proposals, num_proposals = batched_proposals(
        rpn_boxes, objectness, resized, score_threshold=model.first_stage_nms_score_threshold,
        iou_threshold=model.first_stage_nms_iou_threshold,
        max_proposals=int(model.first_stage_max_proposals))  # [B, P, 4], [B]
    boxes, scores = SecondStage(model, canvas_size)(features, proposals)  # [B, P, C', 4], [B, P, C]
    valid_rows = torch.arange(proposals.shape[1])[None] < num_proposals[:, None]  # [B, P]
    detections = batched_detections(boxes, scores, resized, model.postprocessor, valid_rows)
    if model.mask_head is None:
        return detections
    detection_boxes, _, detection_classes, counts = detections
    return (*detections, *MaskStage(model, canvas_size)(features, detection_boxes,
                                                        detection_classes, counts))


def center_net_outputs(model: CenterNet, predictions: dict[str, Tensor], resized_sizes: Tensor
                       ) -> ProgramOutputs:
    """A CenterNet's heads and ``resized_sizes`` int64 ``[B, 2]`` -> its whole
    post-processing (peaks, boxes, keypoints; no NMS), as detector.pt2 and model.onnx give
    it: the four detection outputs, then with keypoint tasks ``detection_keypoints [B, k, K,
    2]`` (normalized y, x) and ``detection_keypoint_scores [B, k, K]``; rows scoring 0 or less
    (before any keypoint rescoring) zeroed, as the OD API counts ``num_detections``."""
    decoded = model.decode_batch(predictions, resized_sizes)
    scores = decoded["scores"]
    valid = decoded["valid"].to(scores)  # [B, k]; the valid rows come first
    outputs = (decoded["boxes"] * valid[..., None], scores * valid,
               (decoded["classes"] + 1).to(scores) * valid, valid.sum(dim=1))
    if "keypoints" not in decoded:
        return outputs
    return (*outputs, decoded["keypoints"] * valid[..., None, None],
            decoded["keypoint_scores"] * valid[..., None])


def export_program(model: nn.Module, canvas_size: tuple[int, int],
                   input_type: str = "image_tensor") -> torch.export.ExportedProgram:
    """``DetectorProgram`` through ``torch.export`` (dynamic batch, height and width), checked
    against the eager model on two batches of two sizes. ``input_type`` float_image_tensor
    takes ``float32`` 0..255 pixels, every other one ``uint8``. A ``ConfigError`` names what
    the program cannot express."""
    program = DetectorProgram(model, canvas_size).eval()
    dtype = torch.float32 if input_type == "float_image_tensor" else torch.uint8
    height, width = canvas_size
    # sizes unlike each other, 1 and the canvas: torch.export specializes on none of them
    examples = [_pixels(2, max(height * 3 // 4, 3), width + 5, dtype, seed=0),
                _pixels(3, height + 3, max(width // 2, 3) + 1, dtype, seed=1)]
    dims = {0: torch.export.Dim("batch", min=1, max=_MAX_BATCH),
            1: torch.export.Dim("height", min=2, max=_MAX_SIDE),
            2: torch.export.Dim("width", min=2, max=_MAX_SIDE)}
    with torch.no_grad():
        try:
            exported = torch.export.export(program, (examples[0],), dynamic_shapes=(dims,))
        except Exception as trace_error:  # noqa: BLE001 - torch.export raises many types
            text = str(trace_error).strip()
            first_line = text.splitlines()[0] if text else ""
            raise ConfigError(
                f"detector program: the {type(model).__name__} cannot be exported by "
                f"torch.export yet ({type(trace_error).__name__}: {first_line[:200]})"
            ) from None
        module = exported.module()
        names = tuple(instance_outputs(model))
        for pixels in examples:
            found = module(pixels)
            expected = _eager_detections(model, [image.to(torch.float32) / 255.0
                                                 for image in pixels.permute(0, 3, 1, 2)])
            for index, detection in enumerate(expected):
                mismatch = detections_mismatch([output[index] for output in found], detection,
                                               (int(pixels.shape[1]), int(pixels.shape[2])), names)
                if mismatch is not None:
                    raise ObjdetError(f"detector program: differs from the {type(model).__name__} "
                                      f"on a {tuple(pixels.shape)} batch: {mismatch}")
    return exported


def _eager_detections(model: nn.Module, images: list[Tensor]) -> list[dict[str, Tensor]]:
    """The eager model's detections of ``images``; a Mask R-CNN's with ``box_masks [D,
    mask_h, mask_w]`` too: its mask head on them, over each box (``detection_masks``, as the
    eager Predictor computes it)."""
    if not isinstance(model, FasterRCNN) or model.mask_head is None:
        detections: list[dict[str, Tensor]] = model(images)
        return detections
    batch = model.resize_batch(images)
    predictions = model.predict(batch.images, true_image_shapes(batch.resized_sizes))
    detections = model.postprocess(predictions, batch.resized_sizes, batch.original_sizes)
    head = model.mask_head
    for index, (detection, (height, width)) in enumerate(zip(detections, batch.original_sizes,
                                                             strict=True)):
        # fractions of the input image are fractions of the window the detections came from
        fractions = detection["boxes"] / detection["boxes"].new_tensor([width, height] * 2)
        detection["box_masks"] = (
            model.predict_masks(predictions["rpn_features_to_crop"][index:index + 1], fractions,
                                detection["labels"]) if len(fractions)
            else fractions.new_zeros(0, head.mask_height, head.mask_width))
    return detections


def _pixels(batch: int, height: int, width: int, dtype: torch.dtype, seed: int) -> Tensor:
    """``[batch, height, width, 3]`` random 0..255 pixels of ``dtype``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, height, width, 3), generator=generator).to(dtype)


def detections_mismatch(found: Sequence[Tensor], expected: dict[str, Tensor],
                        image_size: tuple[int, int], instance_names: Sequence[str] = ()
                        ) -> str | None:
    """How one image's program outputs (``found``: boxes ``[max, 4]``, scores ``[max]``,
    classes ``[max]``, count ``[]``, then the ``instance_names`` outputs) differ from the
    eager model's detections (``expected``: ``boxes [D, 4]`` x1, y1, x2, y2 input pixels,
    ``scores``, ``labels``, and ``box_masks`` or ``keypoints`` / ``keypoints_scores``); None if
    they agree within ``PROGRAM_TOLERANCE``. Rows whose score ties a neighbour's may come in
    another order: only their scores are compared."""
    boxes, scores, classes, count = found[:4]
    rows = int(count)
    if rows != len(expected["scores"]):
        return f"{rows} detections, the eager model {len(expected['scores'])}"
    if bool((scores[rows:] != 0).any()) or bool((boxes[rows:] != 0).any()):
        return "rows past num_detections are not zero"
    want_scores = expected["scores"].to(scores)
    if rows and float((scores[:rows] - want_scores).abs().max()) > PROGRAM_TOLERANCE:
        return f"scores differ by {float((scores[:rows] - want_scores).abs().max()):.3g}"
    height, width = image_size
    want_boxes = expected["boxes"].to(boxes)[:, [1, 0, 3, 2]] / boxes.new_tensor([height, width] * 2)
    gaps = (want_scores[1:] - want_scores[:-1]).abs() > PROGRAM_TOLERANCE  # [rows - 1]
    edge = torch.ones(min(rows, 1), dtype=torch.bool)
    distinct = torch.cat([edge, gaps]) & torch.cat([gaps, edge])  # [rows]
    box_error = (boxes[:rows] - want_boxes).abs()[distinct]
    if box_error.numel() and float(box_error.max()) > PROGRAM_TOLERANCE:
        return f"normalized boxes differ by {float(box_error.max()):.3g}"
    if bool((classes[:rows][distinct] != expected["labels"].to(classes)[distinct]).any()):
        return "classes differ"
    for name, value in zip(instance_names, found[4:], strict=True):
        if bool((value[rows:] != 0).any()):
            return f"{name} rows past num_detections are not zero"
        error = _instance_error(name, value[:rows], expected, image_size)[distinct]
        if error.numel() and float(error.max()) > PROGRAM_TOLERANCE:
            return f"{name} differ by {float(error.max()):.3g}"
    return None


def _instance_error(name: str, found: Tensor, expected: dict[str, Tensor],
                    image_size: tuple[int, int]) -> Tensor:
    """``[D]``: each detection's largest difference between the program's ``name`` output
    (``found``: its first D rows) and the eager model's (``_eager_detections``), in the
    output's units (mask probabilities, normalized keypoints)."""
    height, width = image_size
    if name == MASKS:
        return (found - expected["box_masks"].to(found)).abs().flatten(1).amax(dim=1)
    if name == KEYPOINTS:  # eager: (x, y) input pixels; the program: normalized (y, x)
        normalized = expected["keypoints"].to(found).flip(-1) / found.new_tensor([height, width])
        return (found - normalized).abs().flatten(1).amax(dim=1)
    if name == KEYPOINT_SCORES:
        return (found - expected["keypoints_scores"].to(found)).abs().flatten(1).amax(dim=1)
    raise ObjdetError(f"detector program: unknown output {name!r}")


ProgramFunction = Callable[[Tensor], ProgramOutputs]


def load_program(path: str | os.PathLike[str]) -> ProgramFunction:
    """``detector.pt2`` -> a function from ``input_tensor [B, H, W, 3]`` to its outputs (the
    four detection outputs, then those the signature's ``program`` entry names after them)."""
    try:
        module = torch.export.load(os.fspath(path)).module()
    except FileNotFoundError:
        raise ObjdetError(f"{path}: detector program not found") from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for a corrupt archive
        raise ObjdetError(f"{path}: cannot load the detector program: {error}") from None

    def run(input_tensor: Tensor) -> ProgramOutputs:
        with torch.no_grad():
            return tuple(module(input_tensor))

    return run

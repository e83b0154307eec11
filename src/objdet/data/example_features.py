"""A tf.Example's feature map: typed reads and writes, and how object geometry is coded in it.

``FeatureReader`` reads one Example's features with their kind checked (``float_list``,
``int64_list``, ``bytes_list``); ``FeatureWriter`` appends typed lists, skipping ``None``
(absent optional fields). On top of them, this module codes the per-object geometry under
the OD API's keys, in both directions:

* Boxes: ``{prefix}ymin/xmin/ymax/xmax`` float lists of normalized coordinates. Values
  outside ``[0, 1]`` by more than ``COORDINATE_TOLERANCE`` (1e-3, rounding of converters)
  are a ``DataError``; values within the tolerance are clipped to ``[0, 1]``.
  ``xmin > xmax`` or ``ymin > ymax`` is an error; zero-size boxes are kept.
* ``image/object/mask``: PNG strings (bytes_list, one per object) or numerical floats
  (float_list of ``N*H*W``); the feature kind tells which. Masks are ``mask > 0``.
* Keypoints: ``len(keypoint/x) / num_objects`` per object; visibility is ``visibility > 0``
  (``~isnan(x)`` when the key is absent); coordinates are kept as stored.

Every error names the record (``source``) and the key. ``objdet.data.example`` maps these
features to and from a ``Sample``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor
from torchvision.io import encode_png

from objdet.data.image_decode import decode_image_bytes
from objdet.errors import DataError
from objdet.protos import feature_pb2
from objdet.structures.boxes import xyxy_to_normalized_yxyx

COORDINATE_TOLERANCE = 1e-3


class FeatureReader:
    """Kind-checked access to one Example's feature map; errors name the record and key."""

    def __init__(self, features: Mapping[str, feature_pb2.Feature], source: str) -> None:
        self.features = features
        self.source = source

    def kind(self, key: str) -> str | None:
        feature = self.features.get(key)
        return None if feature is None else feature.WhichOneof("kind")

    def values(self, key: str, kind: str) -> object | None:
        """The feature's repeated values, or None when absent or empty."""
        feature = self.features.get(key)
        found = None if feature is None else feature.WhichOneof("kind")
        if found is None:
            return None
        if found != kind:
            raise DataError(f"{self.source}: feature {key!r} is a {found}, expected a {kind}")
        values = getattr(feature, kind).value
        return values if len(values) else None

    def floats(self, key: str) -> np.ndarray | None:
        values = self.values(key, "float_list")
        return None if values is None else np.fromiter(values, np.float32)  # type: ignore[call-overload]

    def ints(self, key: str) -> np.ndarray | None:
        values = self.values(key, "int64_list")
        return None if values is None else np.fromiter(values, np.int64)  # type: ignore[call-overload]

    def byte_strings(self, key: str) -> list[bytes] | None:
        values = self.values(key, "bytes_list")
        return None if values is None else list(values)  # type: ignore[call-overload]

    def texts(self, key: str) -> list[str] | None:
        values = self.byte_strings(key)
        try:
            return None if values is None else [value.decode("utf-8") for value in values]
        except UnicodeDecodeError as error:
            raise DataError(f"{self.source}: feature {key!r} is not UTF-8 text: {error}") from None

    def single(self, key: str, kind: str) -> object | None:
        values = self.values(key, kind)
        if values is not None and len(values) != 1:  # type: ignore[arg-type]
            raise DataError(f"{self.source}: feature {key!r} has {len(values)} values, expected 1")  # type: ignore[arg-type]
        return None if values is None else values[0]  # type: ignore[index]

    def text(self, key: str) -> str:
        value = self.single(key, "bytes_list")
        try:
            return "" if value is None else value.decode("utf-8")  # type: ignore[attr-defined]
        except UnicodeDecodeError as error:
            raise DataError(f"{self.source}: feature {key!r} is not UTF-8 text: {error}") from None

    def per_object(self, key: str, count: int, kind: str) -> np.ndarray | None:
        """A list with one value per box (None when absent or empty) of length ``count``."""
        values = self.floats(key) if kind == "float_list" else self.ints(key)
        if values is not None and len(values) != count:
            raise DataError(
                f"{self.source}: {key} has {len(values)} values for {count} boxes; "
                "per-object lists must have equal lengths"
            )
        return values


class FeatureWriter:
    """Adds lists to a feature map; ``None`` values are skipped (optional fields)."""

    def __init__(self, features: Mapping[str, feature_pb2.Feature]) -> None:
        self.features = features

    def bytes(self, key: str, values: list[bytes]) -> None:
        self.features[key].bytes_list.value.extend(values)

    def ints(self, key: str, values: Tensor | list[int] | None) -> None:
        if values is not None:
            self.features[key].int64_list.value.extend(torch.as_tensor(values).long().tolist())

    def floats(self, key: str, values: Tensor | None) -> None:
        if values is not None:
            self.features[key].float_list.value.extend(values.float().flatten().tolist())

    def boxes(self, prefix: str, boxes: Tensor, height: int, width: int) -> None:
        """``boxes [N, 4]`` absolute (x1, y1, x2, y2) as normalized ``{prefix}ymin`` ... lists."""
        normalized = xyxy_to_normalized_yxyx(boxes, height, width)  # [N, 4] ymin, xmin, ymax, xmax
        for column, name in enumerate(("ymin", "xmin", "ymax", "xmax")):
            self.floats(prefix + name, normalized[:, column])

    def masks(self, masks: Tensor | None) -> None:
        """``masks [N, H, W]`` 0/1 as one PNG string per object in ``image/object/mask``."""
        if masks is not None:
            self.bytes(
                "image/object/mask",
                [encode_png(m[None].to(torch.uint8)).numpy().tobytes() for m in masks],
            )

    def keypoints(
        self, keypoints: Tensor | None, visibilities: Tensor | None, height: int, width: int
    ) -> None:
        """``keypoints [N, K, 2]`` absolute (x, y) and ``visibilities [N, K]`` bool, normalized."""
        if keypoints is None:
            return
        points = keypoints.reshape(-1, 2).double()  # [N*K, 2] absolute (x, y)
        self.floats("image/object/keypoint/x", (points[:, 0] / width).float())
        self.floats("image/object/keypoint/y", (points[:, 1] / height).float())
        if visibilities is not None:
            # 2 = labeled and visible, 0 = not labeled (COCO's convention, which the OD API uses).
            self.ints("image/object/keypoint/visibility", visibilities.flatten().long() * 2)


def read_normalized_boxes(features: FeatureReader, prefix: str) -> np.ndarray:
    """``[N, 4]`` float32 (ymin, xmin, ymax, xmax) in [0, 1], validated; see the module doc."""
    keys = [prefix + name for name in ("ymin", "xmin", "ymax", "xmax")]
    columns = [features.floats(key) for key in keys]
    lengths = [0 if column is None else len(column) for column in columns]
    if len(set(lengths)) > 1:
        found = ", ".join(f"{key}: {n}" for key, n in zip(keys, lengths, strict=True))
        raise DataError(f"{features.source}: box coordinate lists differ in length ({found})")
    if lengths[0] == 0:
        return np.zeros((0, 4), np.float32)
    boxes = np.stack(columns, axis=1)  # type: ignore[arg-type]
    inside = (boxes >= -COORDINATE_TOLERANCE) & (boxes <= 1 + COORDINATE_TOLERANCE)
    inverted = (boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3])
    for bad, expected in (
        (~inside.all(axis=1), "normalized coordinates in [0, 1]"),
        (inverted, "ymin <= ymax and xmin <= xmax"),
    ):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            values = ", ".join(f"{key}={boxes[i, k]:.6g}" for k, key in enumerate(keys))
            raise DataError(f"{features.source}: object {i}: expected {expected}, found {values}")
    return np.clip(boxes, 0.0, 1.0)


def read_masks(features: FeatureReader, num_objects: int, height: int, width: int) -> Tensor | None:
    """``uint8 [N, H, W]`` 0/1 masks from PNG strings or a float list of ``N*H*W``."""
    key, source = "image/object/mask", features.source
    kind = features.kind(key)
    if kind == "bytes_list":
        pngs = features.byte_strings(key)
        if pngs is None:
            return None
        if len(pngs) != num_objects:
            raise DataError(f"{source}: {key} has {len(pngs)} PNG masks for {num_objects} objects")
        masks = [_decode_mask(png, f"{source}: {key}[{i}]") for i, png in enumerate(pngs)]
        for i, mask in enumerate(masks):
            if tuple(mask.shape) != (height, width):
                raise DataError(
                    f"{source}: {key}[{i}] is {mask.shape[0]}x{mask.shape[1]}, "
                    f"the image is {height}x{width}"
                )
        return torch.stack(masks) if masks else torch.zeros((0, height, width), dtype=torch.uint8)
    values = features.floats(key) if kind else None
    if values is None:
        return None
    if len(values) != num_objects * height * width:
        raise DataError(
            f"{source}: {key} has {len(values)} floats, expected "
            f"{num_objects}*{height}*{width} (objects*height*width)"
        )
    return torch.from_numpy(values.reshape(num_objects, height, width) > 0).to(torch.uint8)


def _decode_mask(png: bytes, where: str) -> Tensor:
    mask = decode_image_bytes(png, f"{where}: mask", gray=True)  # [1, H, W]
    return (mask[0] > 0).to(torch.uint8)


def read_keypoints(
    features: FeatureReader, num_objects: int, height: int, width: int
) -> tuple[Tensor, Tensor] | None:
    """``(keypoints [N, K, 2]`` absolute (x, y), ``visibilities [N, K]`` bool), None if absent."""
    xs, ys = features.floats("image/object/keypoint/x"), features.floats("image/object/keypoint/y")
    visibility = features.ints("image/object/keypoint/visibility")
    if xs is None and ys is None:
        return None
    count = len(xs if xs is not None else ys)  # type: ignore[arg-type]
    other = [len(v) for v in (xs, ys, visibility) if v is not None]
    if xs is None or ys is None or set(other) != {count} or num_objects == 0 or count % num_objects:
        raise DataError(
            f"{features.source}: image/object/keypoint/x, y (and visibility) must have equal "
            f"lengths that are a multiple of the {num_objects} objects; found lengths {other}"
        )
    per_object = count // num_objects
    points = np.stack([xs * width, ys * height], axis=1)  # [N*K, 2]
    visible = visibility > 0 if visibility is not None else ~np.isnan(xs)
    keypoints = torch.from_numpy(points.reshape(num_objects, per_object, 2))
    return keypoints, torch.from_numpy(visible.reshape(num_objects, per_object))

"""The tf.Example codec: OD API feature keys <-> ``Sample``.

``decode_example`` turns one serialized tf.Example (as the OD API's dataset tools write
them) into a ``Sample`` in objdet's conventions: absolute ``(x1, y1, x2, y2)`` boxes,
label-map ids, a ``uint8 [3, H, W]`` RGB image. ``encode_sample`` does the reverse with the
image bytes it was given (images are never re-encoded).

Decisions, following the OD API's ``TfExampleDecoder`` where it has one:

* With a label map, ``class/text`` decides the id over ``class/label`` (a text missing from
  the label map is a ``LabelMapError``, where the OD API silently used -1). ``class/label``
  ids must be in the label map when one is given. Where both are given and disagree, the
  text's id is used, as in the OD API, but not silently: the decoder counts such records
  (``ExampleDecoder.class_id_conflicts``) and logs a warning at the first one, naming it,
  then at the 10th, 100th, ... with the count so far.
* An optional per-object list that is absent or empty is ``None``; any other length that is
  not the number of boxes is an error naming the key.
* Boxes, masks and keypoints are coded as ``objdet.data.example_features`` describes
  (normalized coordinates checked within a tolerance, PNG or float masks).

This module holds the Sample-level mapping (image, size, class ids, which fields are
read or written); the typed feature access it is built on lives in ``example_features``.

Every error names the record (``source``, e.g. ``file.record#17 (offset 12345)``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from google.protobuf.message import DecodeError
from torch import Tensor

from objdet.data.example_features import (
    FeatureReader,
    FeatureWriter,
    read_keypoints,
    read_masks,
    read_normalized_boxes,
)
from objdet.data.image_decode import decode_image_bytes, read_image_header
from objdet.errors import DataError, LabelMapError
from objdet.protos import example_pb2
from objdet.structures.boxes import normalized_yxyx_to_xyxy
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

logger = logging.getLogger(__name__)

_BOX = "image/object/bbox/"
_DETECTION_BOX = "image/detection/bbox/"
# Batch inference output: all present (possibly empty) or all absent.
DETECTION_KEYS = (
    *(_DETECTION_BOX + name for name in ("ymin", "xmin", "ymax", "xmax")),
    "image/detection/label",
    "image/detection/score",
)
_OBJECT_FLAGS = {"difficult": "difficult", "is_crowd": "is_crowd", "group_of": "group_of"}


@dataclass
class ClassIdConflicts:
    """Records whose ``class/label`` ids disagree with the label-map ids of their
    ``class/text`` (the text's ids are used); counted per decoder, i.e. per dataset and
    process (each DataLoader worker counts its own)."""

    records: int = 0
    objects: int = 0

    def add(
        self, source: str, prefix: str, given: np.ndarray, used: np.ndarray, texts: list[str]
    ) -> None:
        """Count one record; warn at the 1st (naming it), 10th, 100th, ... record."""
        wrong = np.flatnonzero(given != used)
        self.records += 1
        self.objects += len(wrong)
        if self.records == 1:
            i = int(wrong[0])
            logger.warning(
                "%s: %slabel %d disagrees with %stext %r (id %d); using the text's id, as the "
                "OD API does (%d of %d entries here; further records like this are counted)",
                source, prefix, int(given[i]), prefix, texts[i], int(used[i]), len(wrong),
                len(used),
            )
        elif str(self.records).rstrip("0") == "1":  # 10, 100, 1000, ...
            logger.warning(self.summary(so_far=True))

    def summary(self, so_far: bool = False) -> str:
        return (
            f"class/label disagreed with class/text in {self.records} records"
            f"{' so far' if so_far else ''} ({self.objects} objects); the text's label-map id "
            "was used (the OD API's rule)"
        )


@dataclass(frozen=True)
class ExampleDecoder:
    """A configured tf.Example -> ``Sample`` decoder; reuse one for a whole dataset.

    The ``with_*`` switches and ``decode_image=False`` are the training readers' fast path:
    features that are not asked for are not converted (boxes, labels, size and the
    per-object flags always are).
    """

    label_map: LabelMap | None = None
    decode_image: bool = True
    use_display_name: bool = False
    with_masks: bool = True
    with_keypoints: bool = True
    with_image_labels: bool = True
    with_detections: bool = True
    _text_ids: dict[str, int] = field(init=False, repr=False, compare=False)
    class_id_conflicts: ClassIdConflicts = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A dict for the per-object text lookups; ambiguous names go to LabelMap.id_for,
        # which raises the right error.
        texts: dict[str, int] = {}
        if self.label_map is not None:
            key_of = (lambda i: i.label) if self.use_display_name else (lambda i: i.name)
            counts = Counter(key_of(item) for item in self.label_map.items)
            texts = {key_of(i): i.id for i in self.label_map.items if counts[key_of(i)] == 1}
        object.__setattr__(self, "_text_ids", texts)
        object.__setattr__(self, "class_id_conflicts", ClassIdConflicts())

    def __call__(self, serialized: bytes, source: str = "") -> Sample:
        """Decode one serialized tf.Example; ``source`` names it in errors."""
        source = source or "<tf.Example>"
        example = example_pb2.Example()
        try:
            example.ParseFromString(serialized)
        except DecodeError as error:
            raise DataError(f"{source}: not a serialized tf.Example ({error})") from None
        features = FeatureReader(example.features.feature, source)
        encoded = features.single("image/encoded", "bytes_list")
        image, height, width = self._image_and_size(features, encoded)  # type: ignore[arg-type]
        boxes = read_normalized_boxes(features, _BOX)  # [N, 4] (ymin, xmin, ymax, xmax)
        num_objects = len(boxes)
        labels, texts = self._class_ids(features, "image/object/class/", num_objects)
        sample = Sample(
            height=height,
            width=width,
            boxes=normalized_yxyx_to_xyxy(torch.from_numpy(boxes), height, width),
            labels=labels,
            image=image,
            encoded_image=encoded,  # type: ignore[arg-type]
            image_format=features.text("image/format") or "jpeg",
            filename=features.text("image/filename"),
            source_id=features.text("image/source_id"),
            key=features.text("image/key/sha256"),
            label_texts=texts,
        )
        _add_object_fields(sample, features, num_objects)
        if self.with_masks:
            sample.masks = read_masks(features, num_objects, height, width)
        if self.with_keypoints:
            keypoints = read_keypoints(features, num_objects, height, width)
            if keypoints is not None:
                sample.keypoints, sample.keypoint_visibilities = keypoints
        if self.with_image_labels:
            self._add_image_labels(sample, features)
        if self.with_detections:
            self._add_detections(sample, features)
        return sample

    def _image_and_size(
        self, features: FeatureReader, encoded: bytes | None
    ) -> tuple[Tensor | None, int, int]:
        """The decoded image (or None) and the image size, checked against each other."""
        source = features.source
        height = features.single("image/height", "int64_list")
        width = features.single("image/width", "int64_list")
        image = None
        if self.decode_image:
            if encoded is None:
                raise DataError(f"{source}: image/encoded is missing; cannot decode the image")
            # The header's size is checked before decoding: a mismatch costs no decode.
            header = read_image_header(encoded, f"{source}: image/encoded")
            found = (header.height, header.width)
            stated = (height or found[0], width or found[1])
            if stated != found:
                raise DataError(
                    f"{source}: image/height x image/width is {stated[0]}x{stated[1]} but the "
                    f"encoded image is {found[0]}x{found[1]}"
                )
            image = decode_image_bytes(encoded, f"{source}: image/encoded")
            height, width = found
        elif height is None or width is None:
            if encoded is None:
                raise DataError(
                    f"{source}: image/height and image/width are missing and so is image/encoded"
                )
            header = read_image_header(encoded, f"{source}: image/encoded")
            height, width = header.height, header.width
        if height <= 0 or width <= 0:  # type: ignore[operator]
            raise DataError(f"{source}: image size must be positive, got {height}x{width}")
        return image, int(height), int(width)  # type: ignore[call-overload]

    def _class_ids(
        self, features: FeatureReader, prefix: str, count: int | None
    ) -> tuple[Tensor, list[str] | None]:
        """Label-map ids from ``{prefix}text`` (with a label map) or ``{prefix}label``."""
        source = features.source
        texts = features.texts(prefix + "text")
        ids = features.ints(prefix + "label")
        if count is None:  # image-level labels: as many as are given
            count = len(texts) if texts is not None else len(ids) if ids is not None else 0
        for key, values in ((prefix + "text", texts), (prefix + "label", ids)):
            if values is not None and len(values) != count:
                raise DataError(f"{source}: {key} has {len(values)} values for {count} entries")
        if self.label_map is not None and texts is not None:
            given = ids
            ids = np.array([self._id_for_text(text, source) for text in texts], np.int64)
            if given is not None and (given != ids).any():
                self.class_id_conflicts.add(source, prefix, given, ids, texts)
        elif ids is None:
            if count == 0:
                return torch.zeros((0,), dtype=torch.int64), texts
            reason = "no label map was given to map it to ids" if texts else "it is missing"
            raise DataError(f"{source}: {count} entries have no {prefix}label and {reason}")
        elif self.label_map is not None:
            unknown = sorted({int(i) for i in ids if int(i) not in self.label_map})
            if unknown:
                raise LabelMapError(
                    f"{source}: {prefix}label ids {unknown} are not in the label map "
                    f"{self.label_map.source}"
                )
        return torch.from_numpy(ids), texts

    def _id_for_text(self, text: str, source: str) -> int:
        class_id = self._text_ids.get(text)
        if class_id is None:  # absent or ambiguous: let the label map say which, by name
            assert self.label_map is not None
            return self.label_map.id_for(text, self.use_display_name, context=source)
        return class_id

    def _add_image_labels(self, sample: Sample, features: FeatureReader) -> None:
        if features.kind("image/class/label") or features.kind("image/class/text"):
            labels, _ = self._class_ids(features, "image/class/", None)
            sample.image_labels = labels
            confidences = features.per_object("image/class/confidence", len(labels), "float_list")
            sample.image_label_confidences = _tensor(confidences)
        sample.neg_category_ids = _tensor(features.ints("image/neg_category_ids"))
        sample.not_exhaustive_category_ids = _tensor(
            features.ints("image/not_exhaustive_category_ids")
        )

    def _add_detections(self, sample: Sample, features: FeatureReader) -> None:
        """``detection_*`` from ``image/detection/*`` (batch inference output).

        All six keys absent: no stored detections (None). All six present with empty lists:
        an image where the model found nothing (empty tensors), as the OD API's offline
        evaluation reads it. Some present and some absent is an error naming them.
        """
        boxes = read_normalized_boxes(features, _DETECTION_BOX)
        scores = features.per_object("image/detection/score", len(boxes), "float_list")
        labels = features.per_object("image/detection/label", len(boxes), "int64_list")
        present = [key for key in DETECTION_KEYS if features.kind(key) is not None]
        if not present:
            return
        if len(present) < len(DETECTION_KEYS):
            absent = [key for key in DETECTION_KEYS if key not in present]
            raise DataError(
                f"{features.source}: has {', '.join(present)} but not {', '.join(absent)}; "
                "stored detections need all six lists (empty ones for no detections)"
            )
        if len(boxes) and (scores is None or labels is None):
            raise DataError(
                f"{features.source}: {len(boxes)} detection boxes need image/detection/score "
                "and image/detection/label of the same length"
            )
        xyxy = normalized_yxyx_to_xyxy(torch.from_numpy(boxes), sample.height, sample.width)
        sample.detection_boxes = xyxy
        sample.detection_scores = torch.from_numpy(
            np.zeros(0, np.float32) if scores is None else scores
        )
        sample.detection_labels = torch.from_numpy(np.zeros(0, np.int64) if labels is None else labels)


def decode_example(
    serialized: bytes,
    label_map: LabelMap | None = None,
    *,
    decode_image: bool = True,
    use_display_name: bool = False,
    source: str = "",
) -> Sample:
    """Decode one serialized tf.Example into a ``Sample`` (see the module docstring).

    For many records build one ``ExampleDecoder`` and call it: it prepares the label map
    lookups once and can skip features a training run does not need.
    """
    decoder = ExampleDecoder(label_map, decode_image, use_display_name)
    return decoder(serialized, source)


def _tensor(values: np.ndarray | None) -> Tensor | None:
    return None if values is None else torch.from_numpy(values)


def _add_object_fields(sample: Sample, features: FeatureReader, num_objects: int) -> None:
    """The optional per-object flags, weights and areas."""
    for key, attribute in _OBJECT_FLAGS.items():
        values = features.per_object(f"image/object/{key}", num_objects, "int64_list")
        setattr(sample, attribute, None if values is None else torch.from_numpy(values != 0))
    sample.weights = _tensor(features.per_object("image/object/weight", num_objects, "float_list"))
    sample.areas = _tensor(features.per_object("image/object/area", num_objects, "float_list"))


# -- encoding -----------------------------------------------------------------------------
def encode_sample(sample: Sample) -> bytes:
    """Serialize ``sample`` as a tf.Example with the OD API keys; the image bytes as given.

    ``image/key/sha256`` is the sample's key, or the SHA-256 of the image bytes when empty
    (as the OD API's dataset tools write it). Optional fields are written when not None.
    """
    if sample.encoded_image is None:
        name = sample.filename or sample.source_id or "<sample>"
        raise DataError(
            f"{name}: encode_sample needs sample.encoded_image (objdet never re-encodes)"
        )
    example = example_pb2.Example()
    put = FeatureWriter(example.features.feature)
    put.bytes("image/encoded", [sample.encoded_image])
    put.bytes("image/format", [sample.image_format.encode()])
    put.ints("image/height", [sample.height])
    put.ints("image/width", [sample.width])
    put.bytes("image/filename", [sample.filename.encode()])
    put.bytes("image/source_id", [sample.source_id.encode()])
    key = sample.key or hashlib.sha256(sample.encoded_image).hexdigest()
    put.bytes("image/key/sha256", [key.encode()])
    put.boxes(_BOX, sample.boxes, sample.height, sample.width)
    put.ints("image/object/class/label", sample.labels)
    if sample.label_texts is not None:
        put.bytes("image/object/class/text", [text.encode() for text in sample.label_texts])
    for key, attribute in _OBJECT_FLAGS.items():
        put.ints(f"image/object/{key}", getattr(sample, attribute))
    put.floats("image/object/weight", sample.weights)
    put.floats("image/object/area", sample.areas)
    put.masks(sample.masks)
    put.keypoints(sample.keypoints, sample.keypoint_visibilities, sample.height, sample.width)
    put.ints("image/class/label", sample.image_labels)
    put.floats("image/class/confidence", sample.image_label_confidences)
    put.ints("image/neg_category_ids", sample.neg_category_ids)
    put.ints("image/not_exhaustive_category_ids", sample.not_exhaustive_category_ids)
    if sample.detection_boxes is not None:
        put.boxes(_DETECTION_BOX, sample.detection_boxes, sample.height, sample.width)
        put.floats("image/detection/score", sample.detection_scores)
        put.ints("image/detection/label", sample.detection_labels)
    return example.SerializeToString()

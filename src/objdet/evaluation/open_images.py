"""Open Images metrics (V2 and the challenge protocols) and label-hierarchy expansion.

- ``oid_V2_detection_metrics``: PASCAL-style AP@0.5 where group-of boxes absorb the
  detections inside them (those are ignored: group-of weight 0); difficult flags are not read.
- ``oid_challenge_detection_metrics``: as V2, but a detected group-of box counts as one true
  positive (weight 1, score = best of its detections) and an undetected one as one miss; and
  in each image only classes with a verified image-level label (present or absent) or a box
  are evaluated: detections of any other class are dropped.
- ``oid_challenge_segmentation_metrics``: the challenge protocol on masks; objects whose mask
  is empty are ignore regions; group-of weight 0.

The challenge expects ground truth expanded along the class hierarchy (every box also
labelled with its ancestors; verified-absent labels also make descendants absent):
``expand_annotations_csv`` does that, as the OD API's oid_hierarchical_labels_expansion.py.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from objdet.atomic import atomic_write
from objdet.errors import DataError
from objdet.evaluation.base import Category, GroundTruth
from objdet.evaluation.pascal_voc import ImageId, MatchingEvaluator
from objdet.structures.detections import Detections


class OpenImagesDetectionEvaluator(MatchingEvaluator):
    """``oid_V2_detection_metrics`` (metric prefix 'OpenImagesV2')."""

    def __init__(
        self,
        categories: Sequence[Category],
        matching_iou_threshold: float = 0.5,
        evaluate_corlocs: bool = False,
        metric_prefix: str = "OpenImagesV2",
        group_of_weight: float = 0.0,
        evaluate_masks: bool = False,
    ) -> None:
        super().__init__(
            categories,
            metric_prefix=metric_prefix,
            matching_iou_threshold=matching_iou_threshold,
            evaluate_corlocs=evaluate_corlocs,
            group_of_weight=group_of_weight,
            evaluate_masks=evaluate_masks,
            use_difficult=False,
            use_group_of=True,
        )


class OpenImagesChallengeEvaluator(OpenImagesDetectionEvaluator):
    """The Open Images challenge protocol: image-level labels decide the evaluated classes.

    ``evaluate_masks=False`` is 'OpenImagesDetectionChallenge' (group-of weight 1.0);
    ``evaluate_masks=True`` is 'OpenImagesInstanceSegmentationChallenge' (weight 0.0).
    """

    def __init__(
        self,
        categories: Sequence[Category],
        evaluate_masks: bool = False,
        matching_iou_threshold: float = 0.5,
        evaluate_corlocs: bool = False,
        group_of_weight: float | None = None,
    ) -> None:
        if group_of_weight is None:
            group_of_weight = 0.0 if evaluate_masks else 1.0
        prefix = (
            "OpenImagesInstanceSegmentationChallenge"
            if evaluate_masks
            else "OpenImagesDetectionChallenge"
        )
        super().__init__(
            categories,
            matching_iou_threshold=matching_iou_threshold,
            evaluate_corlocs=evaluate_corlocs,
            metric_prefix=prefix,
            group_of_weight=group_of_weight,
            evaluate_masks=evaluate_masks,
        )

    def clear(self) -> None:
        super().clear()
        self._evaluatable_labels: dict[ImageId, np.ndarray] = {}
        self.num_unverified_detections = 0

    def add_ground_truth(self, image_id: ImageId, ground_truth: GroundTruth) -> None:
        """Also remember which classes the image verifies (labels present/absent, boxes)."""
        super().add_ground_truth(image_id, ground_truth)
        verified = [ground_truth.labels]
        for labels in (ground_truth.image_labels, ground_truth.negative_image_labels):
            if labels is not None:
                verified.append(labels)
        self._evaluatable_labels[image_id] = np.unique(np.concatenate(verified))

    def _select_detections(self, image_id: ImageId, detections: Detections) -> Detections:
        """Drop detections of classes the image has no verified label for (not errors)."""
        allowed = np.isin(detections.labels, self._evaluatable_labels.pop(image_id))
        self.num_unverified_detections += int((~allowed).sum())
        return detections.select(allowed)


class OpenImagesDetectionChallengeEvaluator(OpenImagesChallengeEvaluator):
    """``oid_challenge_detection_metrics``."""

    def __init__(self, categories: Sequence[Category], matching_iou_threshold: float = 0.5) -> None:
        super().__init__(
            categories, evaluate_masks=False, matching_iou_threshold=matching_iou_threshold
        )


class OpenImagesInstanceSegmentationChallengeEvaluator(OpenImagesChallengeEvaluator):
    """``oid_challenge_segmentation_metrics``."""

    def __init__(self, categories: Sequence[Category], matching_iou_threshold: float = 0.5) -> None:
        super().__init__(
            categories, evaluate_masks=True, matching_iou_threshold=matching_iou_threshold
        )


# -- hierarchy expansion ------------------------------------------------------------------


@dataclass(frozen=True)
class LabelHierarchy:
    """The Open Images class hierarchy, flattened.

    Attributes:
        ancestors: label -> every label above it (the virtual root excluded).
        descendants: label -> every label below it.
    """

    ancestors: dict[str, frozenset[str]]
    descendants: dict[str, frozenset[str]]

    @classmethod
    def from_json(cls, tree: dict[str, Any], source: str = "<hierarchy>") -> LabelHierarchy:
        """From the JSON tree ``{'LabelName': ..., 'Subcategory': [...]}``; its root is virtual."""
        ancestors: dict[str, set[str]] = {}
        descendants: dict[str, set[str]] = {}

        def visit(node: Any, path: tuple[str, ...]) -> set[str]:
            if not isinstance(node, dict) or "LabelName" not in node:
                raise DataError(f"{source}: expected a node with 'LabelName', got {node!r:.80}")
            label = str(node["LabelName"])
            below: set[str] = set()
            for child in node.get("Subcategory", []):
                below |= visit(child, (*path, label))
            # A label may sit under several parents: union what every occurrence says.
            ancestors.setdefault(label, set()).update(path)
            descendants.setdefault(label, set()).update(below)
            return below | {label}

        root = tree if isinstance(tree, dict) else {}
        for child in root.get("Subcategory", []):
            visit(child, ())
        if not ancestors:
            raise DataError(f"{source}: the hierarchy has no labels under its root")
        return cls(
            ancestors={k: frozenset(v) for k, v in ancestors.items()},
            descendants={k: frozenset(v) for k, v in descendants.items()},
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelHierarchy:
        try:
            with open(path, encoding="utf-8") as handle:
                tree = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise DataError(f"{path}: cannot read the JSON label hierarchy: {error}") from error
        return cls.from_json(tree, source=str(path))

    def expand(self, label: str, positive: bool, where: str) -> list[str]:
        """Labels implied by ``label``: ancestors when present, descendants when absent."""
        table = self.ancestors if positive else self.descendants
        if label not in table:
            raise DataError(f"{where}: label {label!r} is not in the label hierarchy")
        return sorted(table[label])


BOXES = 1  # --annotation_type: boxes or segments
IMAGE_LABELS = 2  # --annotation_type: image-level labels


def _expanded_rows(
    rows: Iterator[list[str]],
    header: list[str],
    hierarchy: LabelHierarchy,
    annotation_type: int,
    source: str,
) -> Iterator[list[str]]:
    """Each row, followed by copies relabelled with the labels it implies."""
    if "LabelName" not in header:
        raise DataError(f"{source}: header has no LabelName column: {header}")
    label_column = header.index("LabelName")
    confidence_column = -1
    if annotation_type == IMAGE_LABELS:
        if "Confidence" not in header:
            raise DataError(f"{source}: image-level labels need a Confidence column: {header}")
        confidence_column = header.index("Confidence")
    for line_number, row in enumerate(rows, start=2):
        where = f"{source}:{line_number}"
        if len(row) != len(header):
            raise DataError(f"{where}: expected {len(header)} columns, found {len(row)}")
        positive = True
        if annotation_type == IMAGE_LABELS:
            try:
                positive = float(row[confidence_column]) == 1.0
            except ValueError:
                raise DataError(
                    f"{where}: Confidence must be 0 or 1, got {row[confidence_column]!r}"
                ) from None
        yield row
        for label in hierarchy.expand(row[label_column], positive, where):
            yield [*row[:label_column], label, *row[label_column + 1 :]]


def expand_annotations_csv(
    hierarchy_path: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    annotation_type: int,
) -> tuple[int, int]:
    """Expand an Open Images boxes/segments (1) or image-level labels (2) CSV file.

    Returns ``(rows read, rows written)``; the output is written atomically.
    """
    if annotation_type not in (BOXES, IMAGE_LABELS):
        raise DataError(
            f"annotation_type must be 1 (boxes/segments) or 2 (labels), got {annotation_type}"
        )
    hierarchy = LabelHierarchy.load(hierarchy_path)
    read = written = 0
    try:
        source = open(input_path, newline="", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as error:
        raise DataError(f"{input_path}: cannot read annotations: {error}") from error
    with source, atomic_write(Path(output_path), "w") as target:
        reader = csv.reader(source)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{input_path}: empty file, expected a CSV header")
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(header)

        def counted() -> Iterator[list[str]]:
            nonlocal read
            for row in reader:
                read += 1
                yield row

        for row in _expanded_rows(counted(), header, hierarchy, annotation_type, str(input_path)):
            writer.writerow(row)
            written += 1
    return read, written

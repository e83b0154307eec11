"""Detection metrics: the metrics_set registry, PASCAL VOC, Open Images, COCO, reports.

- ``objdet.evaluation.base``: ``GroundTruth``, the ``DetectionEvaluator`` protocol every
  evaluator follows and the ``HeadlineMetric`` each declares. Detections are
  ``objdet.structures.detections.Detections``.
- ``objdet.evaluation.registry``: ``build_evaluators`` by the OD API's metrics_set names.
- ``objdet.evaluation.reports``: metrics JSON/CSV, per-category tables, PR-curve PNGs.
"""

from objdet.evaluation.base import DetectionEvaluator, GroundTruth, HeadlineMetric

__all__ = ["DetectionEvaluator", "GroundTruth", "HeadlineMetric"]

"""The few types every part of objdet shares.

- ``objdet.structures.label_map``: ``LabelMap`` (no torch import).
- ``objdet.structures.sample``: ``Sample``, one image and its annotations.
- ``objdet.structures.boxes``: conversions between box layouts, used only at the edges.
- ``objdet.structures.detections``: ``Detections``, one image's detections (numpy, no torch
  import), from model outputs or stored records to evaluators, predictors and writers.

Boxes inside objdet are ``Tensor[N, 4]`` float32 ``(x1, y1, x2, y2)`` in absolute pixels of
the image they belong to; class ids are label-map ids (1..N).
"""

"""Drawing detections, plots and reports.

- ``objdet.viz.draw``: ``draw_detections`` (boxes, class names and scores on an image) and
  ``class_color`` (a stable, distinct colour per class id).
"""

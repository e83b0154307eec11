"""Label with the model in the loop: ``objdet annotate``.

A web page shows each image with the current model's suggested boxes; a person accepts,
rejects, corrects or draws boxes; every answer is committed to a SQLite store before the next
image is shown; a background trainer process fine-tunes the model on all accepted answers
and exports each new checkpoint as a new version, which the suggestions switch to without a
restart.

- ``objdet.annotate.sources``: the project's images (a folder or TFRecords), referenced by key.
- ``objdet.annotate.store``: the SQLite (WAL) store of answers and of image leases.
- ``objdet.annotate.suggestions``: the newest exported model version and its predictions.
- ``objdet.annotate.initial_model``: suggestions before the first version (``--initial_model``).
- ``objdet.annotate.tasks``: which image comes next (uncertainty, random or file order).
- ``objdet.annotate.app``: the fastapi app (page + JSON API).
- ``objdet.annotate.trainer``: the background training process.
- ``objdet.annotate.class_heads``: the initial model's class rows remapped onto the project's labels.
- ``objdet.annotate.exports``: accepted answers as TFRecord, COCO, VOC, YOLO or JSONL.

Importing this package does not import torch or fastapi.
"""

"""Data: TFRecord framing, the tf.Example codec, input path expansion, source formats.

Submodules are imported on use; ``objdet.data.tfrecord`` and ``objdet.data.input_paths``
do not import torch, so tools that only move records around start fast.
"""

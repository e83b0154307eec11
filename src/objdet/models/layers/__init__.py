"""Layers the OD API's TensorFlow networks need and PyTorch lacks (TF 'SAME' padding)."""

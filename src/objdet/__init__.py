"""objdet: a maintained, PyTorch-based successor of the TensorFlow Object Detection API.

Importing ``objdet`` is cheap and has no side effects: subpackages are imported on use.
"""

__version__ = "0.1.0"

"""Meta-architectures: how a detector turns images into losses and detections (SSD, ...)."""

"""SSD feature extractors: a base network tapped at strides 16 and 32, plus extra layers."""

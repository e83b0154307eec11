"""Necks: the layers between a backbone and the heads (SSD extra layers, FPN, BiFPN)."""

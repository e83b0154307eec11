"""Backbone networks that torchvision does not provide (MobileNet v1)."""

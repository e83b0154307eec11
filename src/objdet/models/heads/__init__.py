"""Prediction heads: box predictors over feature maps."""

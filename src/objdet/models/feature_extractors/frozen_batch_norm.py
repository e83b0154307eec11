"""``batch_norm_trainable``, as every Faster R-CNN extractor of the OD API reads it.

With ``batch_norm_trainable: false`` (the OD API's default) the extractor's batch norms keep
their moving statistics in training too -- Keras' ``FreezableBatchNorm(training=False)``,
slim's ``batch_norm(is_training=False)`` -- while gamma and beta still train.
"""

from __future__ import annotations

from typing import Self

from torch import nn


class BatchNormFreezingExtractor(nn.Module):
    """A module whose batch norms stay in eval mode unless ``batch_norm_trainable``; subclasses
    set the attribute in ``__init__``, then call ``self.train(self.training)``."""

    batch_norm_trainable: bool = True

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        if not self.batch_norm_trainable:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

"""The moving average of weights: parameters averaged, batch-norm statistics live (OD API)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from objdet.engine.ema import build_ema


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
    inputs = torch.randn(8, 3, 6, 6, generator=generator) * 3 + 1
    loss = model(inputs).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_parameters_follow_the_exponential_average_and_statistics_stay_live() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4, momentum=0.5), nn.ReLU())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ema = build_ema(model, decay=0.9)
    generator = torch.Generator().manual_seed(1)
    expected = None
    for _ in range(4):
        _step(model, optimizer, generator)
        ema.update_parameters(model)
        live = [p.detach().clone() for p in model.parameters()]
        # the first update copies, later ones average
        expected = live if expected is None else [0.9 * e + 0.1 * w for e, w in zip(expected, live)]
    for averaged, wanted, current in zip(ema.module.parameters(), expected, model.parameters()):
        torch.testing.assert_close(averaged, wanted)
        assert not torch.equal(averaged, current)  # an average, not a copy
    for averaged, current in zip(ema.module.buffers(), model.buffers()):
        assert torch.equal(averaged, current)  # running mean / var / count of the live model
    assert model[1].running_var.sub(1).abs().max() > 0.1  # the statistics did move


def test_decay_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="moving_average_decay must be in"):
        build_ema(nn.Linear(2, 2), decay=1.0)

"""slim's ResNet v1: where the strides sit, atrous ``output_stride``, store-non-strided
block outputs, the TF1 variable names (parity with tf_slim: test_resnet_v1_slim_parity.py)."""

from __future__ import annotations

import pytest
import torch

from objdet.models.backbones.resnet_v1_slim import (
    Bottleneck,
    ResNetV1Slim,
    SlimBlock,
    plan_units,
    resnet_v1_slim_blocks,
)

TINY_BLOCKS = resnet_v1_slim_blocks(50, depth_multiplier=1 / 16)  # base depths 8, 8, 16, 32


def _tiny(**options: object) -> ResNetV1Slim:
    torch.manual_seed(0)
    return ResNetV1Slim(blocks=TINY_BLOCKS, **options).eval()  # type: ignore[arg-type]


def _units(network: ResNetV1Slim, block: int) -> list[Bottleneck]:
    return list(network.blocks[block])  # type: ignore[arg-type]


def test_blocks_follow_resnet_v1_50_and_the_depth_multiplier() -> None:
    assert resnet_v1_slim_blocks(101) == [SlimBlock(64, 3, 2), SlimBlock(128, 4, 2),
                                          SlimBlock(256, 23, 2), SlimBlock(512, 3, 1)]
    assert [block.num_units for block in resnet_v1_slim_blocks(152)] == [3, 8, 36, 3]
    assert [block.base_depth for block in resnet_v1_slim_blocks(
        50, depth_multiplier=0.25, min_base_depth=24)] == [24, 32, 64, 128]
    with pytest.raises(ValueError, match="depth must be one of"):
        resnet_v1_slim_blocks(34)


def test_the_stride_sits_on_the_3x3_conv_of_each_blocks_last_unit() -> None:
    network = _tiny()
    for block, block_stride in enumerate((2, 2, 2, 1)):
        units = _units(network, block)
        assert [unit.conv2.conv.stride[0] for unit in units] == (
            [1] * (len(units) - 1) + [block_stride])
        assert all(unit.conv1.conv.stride == (1, 1) and unit.conv3.conv.stride == (1, 1)
                   for unit in units)
        assert all(unit.conv2.conv.dilation == (1, 1) for unit in units)
    # a projection shortcut only where the width changes: the stem's 64 -> 32, 32 -> 64, ...
    assert [unit.shortcut is not None for unit in _units(network, 0)] == [True, False, False]
    assert [unit.shortcut is not None for unit in _units(network, 1)] == [False] * 4
    assert network.stem.conv.stride == (2, 2) and network.stem.conv.padding == (3, 3)
    with torch.no_grad():
        outputs = network(torch.randn(1, 3, 65, 96))
    # stem + pool: 65x96 -> 17x24; blocks end at strides 8, 16, 32, 32
    assert [tuple(output.shape) for output in outputs] == [
        (1, 32, 9, 12), (1, 32, 5, 6), (1, 64, 3, 3), (1, 128, 3, 3)]
    assert network.out_channels == [32, 32, 64, 128]


@pytest.mark.parametrize(("output_stride", "rates", "size"), [
    (8, [1, 1, 2, 4], (9, 12)),    # block2's stride becomes rate 2 for block3, block3's 4
    (16, [1, 1, 1, 2], (5, 6)),
])
def test_output_stride_turns_later_strides_into_atrous_rates(
        output_stride: int, rates: list[int], size: tuple[int, int]) -> None:
    network = _tiny(output_stride=output_stride)
    for block, rate in enumerate(rates):
        units = _units(network, block)
        assert {unit.conv2.conv.dilation[0] for unit in units} == {rate}
        assert {unit.conv2.conv.padding[0] for unit in units} == {rate}  # 'SAME' at any rate
    with torch.no_grad():
        outputs = network(torch.randn(1, 3, 65, 96))
    assert [tuple(output.shape[-2:]) for output in outputs[1:]] == [size] * 3


def test_unreachable_output_strides_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        plan_units(TINY_BLOCKS, 6, False)
    with pytest.raises(ValueError, match="cannot be reached"):
        plan_units(TINY_BLOCKS, 64, False)  # the blocks stop at 32
    with pytest.raises(ValueError, match="cannot be reached"):
        plan_units(TINY_BLOCKS[:1], 16, False)  # block1 alone stops at 8


def test_store_non_strided_activations_gives_the_strided_values_at_twice_the_density() -> None:
    strided = _tiny()
    dense = _tiny(store_non_strided_activations=True)
    dense.load_state_dict(strided.state_dict())
    for module in strided.modules():  # non-trivial statistics, same in both
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    dense.load_state_dict(strided.state_dict())
    images = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        expected, found = strided(images), dense(images)
    assert [tuple(output.shape[-2:]) for output in found] == [(16, 20), (8, 10), (4, 5), (2, 3)]
    # eval mode: 1x1 convs, norms and ReLUs commute with subsampling (float rounding aside)
    for block in range(3):
        torch.testing.assert_close(found[block][..., ::2, ::2], expected[block],
                                   rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(found[3], expected[3], rtol=1e-4, atol=1e-3)


def test_the_slim_variable_map_covers_every_tensor_once() -> None:
    network = _tiny()
    variable_map = network.slim_variable_map("resnet_v1_50")
    state = {name for name in network.state_dict() if not name.endswith("num_batches_tracked")}
    names = [target.name for target in variable_map.values()]
    assert sorted(names) == sorted(state)
    assert variable_map["resnet_v1_50/conv1/weights"].name == "stem.conv.weight"
    assert variable_map["resnet_v1_50/block3/unit_6/bottleneck_v1/conv2/BatchNorm/gamma"].name \
        == "blocks.2.5.conv2.norm.weight"
    assert "resnet_v1_50/block2/unit_1/bottleneck_v1/shortcut/weights" not in variable_map

"""Every train_config field is implemented, documented as without effect, or rejected."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

import objdet.config
from objdet.engine import train_config as train_config_module
from objdet.engine.gradients import bias_grad_multiplier, bias_parameters
from objdet.engine.mixed_precision import (
    autocast_layers,
    bfloat16_available,
    check_bfloat16_supported,
)
from objdet.engine.optim import build_optimizer
from objdet.engine.train_config import (
    IMPLEMENTED,
    NO_EFFECT,
    UNSUPPORTED,
    build_train_settings,
)
from objdet.engine.trainer import Hook, Trainer
from objdet.engine.training import TrainOptions, train
from objdet.errors import ConfigError
from objdet.models import build_model
from objdet.models.regularization import parameter_groups
from objdet.protos import train_pb2


def test_every_train_config_field_is_handled_or_documented() -> None:
    """A field added to train.proto must be placed in one set, or it could be ignored."""
    fields = {field.name for field in train_pb2.TrainConfig.DESCRIPTOR.fields}
    sets = [set(IMPLEMENTED), set(NO_EFFECT), set(UNSUPPORTED)]
    assert set.union(*sets) == fields, sorted(fields.symmetric_difference(set.union(*sets)))
    assert sum(len(s) for s in sets) == len(fields), "a field is in two sets"


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_fields_fail_naming_the_field_value_and_what_is_supported(name: str) -> None:
    config = train_pb2.TrainConfig()
    supported = UNSUPPORTED[name].supported
    setattr(config, name, not supported)
    shown = str(not supported).lower()
    with pytest.raises(ConfigError, match=rf"^train_config\.{name}: {shown} is not supported by objdet "
                                          rf"\(supported: {str(supported).lower()}\): "):
        build_train_settings(config)
    setattr(config, name, supported)  # set explicitly to the supported value: accepted
    build_train_settings(config)


def test_a_field_in_no_set_fails_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a proto field added later (in no set yet) does: fail, not pass silently."""
    monkeypatch.setattr(train_config_module, "IMPLEMENTED", IMPLEMENTED - {"bias_grad_multiplier"})
    config = train_pb2.TrainConfig(bias_grad_multiplier=2.0)
    with pytest.raises(ConfigError, match=r"train_config\.bias_grad_multiplier: 2\.0 is not supported"):
        build_train_settings(config)


def test_no_effect_fields_are_accepted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    config = train_pb2.TrainConfig(batch_queue_capacity=3, sync_replicas=True,
                                   fine_tune_checkpoint_version=train_pb2.V2, prefetch_queue_capacity=5)
    with caplog.at_level(logging.INFO, logger="objdet.engine.train_config"):
        build_train_settings(config)
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("train_config.batch_queue_capacity: 3 has no effect") for m in messages)
    assert any(m.startswith("train_config.sync_replicas: true has no effect") for m in messages)
    assert any(m.startswith("train_config.fine_tune_checkpoint_version: V2 has no effect") for m in messages)
    assert not any("prefetch_queue_capacity" in m for m in messages)  # its default: nothing to say


def test_settings_read_the_fields() -> None:
    config = train_pb2.TrainConfig(
        batch_size=6, num_steps=9, gradient_clipping_by_norm=2.5, fine_tune_checkpoint="a.pt",
        from_detection_checkpoint=True, freeze_variables=["box_predictor"], bias_grad_multiplier=2.0,
        add_regularization_loss=False, use_bfloat16=True,
    )
    settings = build_train_settings(config)
    assert (settings.batch_size, settings.num_steps, settings.gradient_clipping_by_norm) == (6, 9, 2.5)
    assert settings.fine_tune is not None and settings.fine_tune.checkpoint_type == "detection"
    assert settings.freeze_variables == ("box_predictor",)
    assert (settings.bias_grad_multiplier, settings.add_regularization_loss, settings.use_bfloat16) == (2.0, False, True)
    assert not settings.fine_tune.load_all_detection_checkpoint_vars
    config.load_all_detection_checkpoint_vars = True
    assert build_train_settings(config).fine_tune.load_all_detection_checkpoint_vars  # type: ignore[union-attr]
    config.fine_tune_checkpoint_type = "full"
    full = build_train_settings(config).fine_tune
    assert full is not None and full.checkpoint_type == "full"
    assert not full.load_all_detection_checkpoint_vars  # widens a detection fine-tune only
    with pytest.raises(ConfigError, match=r"train_config\.gradient_clipping_by_norm: -1\.0 is negative"):
        build_train_settings(train_pb2.TrainConfig(gradient_clipping_by_norm=-1.0))


# -- the effect of each implemented field -------------------------------------------------
def _cpu_has_bfloat16() -> bool:
    try:
        check_bfloat16_supported(torch.device("cpu"))
    except ConfigError:
        return False
    return True


needs_cpu_bfloat16 = pytest.mark.skipif(not _cpu_has_bfloat16(), reason="this CPU has no bfloat16 kernels")


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        features = self.norm(self.conv(torch.stack(images))).mean(dim=(2, 3))
        wanted = torch.stack([t["boxes"][0, :2] for t in targets])
        return {"Loss/regression": ((self.head(features) - wanted) ** 2).mean()}


def _gradients_after_one_step(multiplier: float) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = TwoLayers()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    trainer = Trainer(
        model=model, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
        batches=iter(()), num_steps=1, gradient_multipliers=bias_grad_multiplier(model, multiplier),
    )
    generator = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 4, 4, generator=generator) for _ in range(2)]
    targets = [{"boxes": torch.rand(1, 4, generator=generator)} for _ in range(2)]
    trainer.run_step((images, targets))
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}  # type: ignore[union-attr]


def test_bias_grad_multiplier_scales_conv_and_linear_biases_only() -> None:
    plain, scaled = _gradients_after_one_step(0.0), _gradients_after_one_step(3.0)
    for name in plain:
        factor = 3.0 if name in ("conv.bias", "head.bias") else 1.0  # norm.bias is slim's beta
        torch.testing.assert_close(scaled[name], plain[name] * factor)
    assert bias_grad_multiplier(TwoLayers(), 0.0) == []  # 0: off, as in the OD API


def test_bias_parameters_of_an_ssd_leave_batch_norm_out(tiny_config_path: Path) -> None:
    model = build_model(objdet.config.load(tiny_config_path).model)
    biases = {id(p) for p in bias_parameters(model)}
    names = [name for name, p in model.named_parameters() if id(p) in biases]
    assert names and all(name.endswith(".bias") for name in names)
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norm_biases and not any(id(b) in biases for b in norm_biases)


def test_add_regularization_loss_false_removes_every_weight_decay(tiny_config_path: Path) -> None:
    config = objdet.config.load(tiny_config_path)
    model = build_model(config.model)
    with_decay = build_optimizer(config.train_config.optimizer, parameter_groups(model)).optimizer
    assert max(group["weight_decay"] for group in with_decay.param_groups) > 0
    without = build_optimizer(config.train_config.optimizer, parameter_groups(model, regularize=False)).optimizer
    assert [group["weight_decay"] for group in without.param_groups] == [0.0]
    assert sum(len(g["params"]) for g in without.param_groups) == len(list(model.parameters()))


@needs_cpu_bfloat16
def test_bfloat16_autocast_runs_the_layers_in_bfloat16_and_the_losses_in_float32(tiny_config_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(objdet.config.load(tiny_config_path).model)
    seen: dict[str, torch.dtype] = {}
    first_conv = next(m for m in model.feature_extractor.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, output: seen.__setitem__("conv", output.dtype))
    autocast_layers(model, "cpu")
    model.box_predictor.register_forward_hook(  # runs after autocast_layers' hook
        lambda module, args, output: seen.__setitem__("predictor", output[0].dtype))
    images = [torch.rand(3, 40, 50), torch.rand(3, 30, 30)]
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 25.0]]), "labels": torch.tensor([1])}] * 2
    losses = model.train()(images, targets)
    assert seen == {"conv": torch.bfloat16, "predictor": torch.float32}  # cast back on the way out
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    assert not torch.is_autocast_enabled("cpu")  # left after the layers' forward
    model.eval()(images)
    assert seen["conv"] == torch.float32  # evaluation stays float32


def test_bfloat16_on_a_device_without_it_trains_in_float32_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The OD API honours use_bfloat16 on TPUs only (model_lib_v2: ``use_bfloat16 and
    use_tpu``), and every TF2 zoo config sets it: elsewhere it trains in float32."""
    with pytest.raises(ConfigError, match=r"^train_config\.use_bfloat16: true is supported on cpu and cuda"):
        check_bfloat16_supported(torch.device("meta"))
    with caplog.at_level("WARNING"):
        assert not bfloat16_available(torch.device("meta"))
    assert "train_config.use_bfloat16: true is supported on cpu and cuda" in caplog.text
    assert "training in float32" in caplog.text


@needs_cpu_bfloat16
def test_train_wires_every_implemented_field(tiny_config_path: Path, tmp_path: Path) -> None:
    """One training step with the fields on, inspected from a hook."""
    config = objdet.config.load(tiny_config_path)
    config.ClearField("eval_input_reader")
    train_config = config.train_config
    train_config.batch_size = 2
    train_config.use_bfloat16 = True
    train_config.bias_grad_multiplier = 2.0
    train_config.add_regularization_loss = False
    train_config.gradient_clipping_by_norm = 5.0
    train_config.ClearField("data_augmentation_options")
    seen: dict[str, object] = {}

    class InspectHook(Hook):
        def before_train(self, trainer: Trainer) -> None:
            model = trainer.model
            conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
            conv.register_forward_hook(lambda module, args, output: seen.__setitem__("dtype", output.dtype))

        def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
            seen["decays"] = {group["weight_decay"] for group in trainer.optimizer.param_groups}
            seen["factors"] = [m.factor for m in trainer.gradient_multipliers]
            seen["clip"] = trainer.gradient_clip_norm

    train(config, tmp_path / "model", TrainOptions(num_train_steps=1, num_workers=0, show_progress=False,
                                                  extra_hooks=[InspectHook()], device="cpu"))
    assert seen == {"dtype": torch.bfloat16, "decays": {0.0}, "factors": [2.0], "clip": 5.0}

"""Realistic, seeded weights for an OD API SSD/EfficientDet Keras model (reference env only).

A freshly built OD API model is useless as a parity oracle: its feature maps on real images are
~1e-16..1e-22, so any implementation "matches" it. This module gives every variable a value
that keeps activations O(1) and input dependent:

* conv / dense kernels: normal, std sqrt(2 / fan_in) (fan_in of a depthwise kernel = kh * kw,
  of a separable conv's pointwise kernel = in_channels * depth_multiplier);
* batch norm: gamma ~ U(0.5, 1.5), beta ~ U(0.5, 1.5), moving mean / variance measured on the
  real calibration images (`calibrate_batch_norms`): one eager forward in which every BN layer,
  before normalizing, sets its moving statistics to the mean / (biased) variance of its actual
  input, so each BN sees inputs produced by already calibrated BNs upstream;
* other biases ~ N(0, 0.1); BiFPN fusion weights (and any other trainable variable without a
  known role, listed by `initialize`) ~ U(0.5, 1.5);
* head outputs (`scale_heads`): the last conv of each class head is rescaled so that its
  pre-bias logits have std 2 (on the calibration image where they vary most), with biases ~ N(-4, 0.5) (scores
  spread out and few saturate near 1, so top-k ties are rare); box heads get std 1 and
  biases ~ N(0, 0.2).

Every value is drawn from numpy's generator seeded by (seed, crc32 of the variable name), so
the weights depend only on the seed, the config and the TF version.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
from tf_keras.src.layers.normalization.batch_normalization import BatchNormalizationBase

CLASS_LOGIT_STD = 2.0
CLASS_BIAS_MEAN = -4.0
BOX_ENCODING_STD = 1.0


class VariableInitializer:
    """Assigns seeded values to variables, each exactly once."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.assigned: set[int] = set()
        self._name_counts: dict[str, int] = {}

    def rng(self, variable: tf.Variable) -> np.random.Generator:
        count = self._name_counts.get(variable.name, 0)
        self._name_counts[variable.name] = count + 1
        key = zlib.crc32(f"{variable.name}#{count}".encode())
        return np.random.default_rng([self.seed, key])

    def assign(self, variable: tf.Variable | None, kind: str, fan_in: int = 1) -> None:
        if variable is None or id(variable) in self.assigned:
            return
        rng = self.rng(variable)
        shape = tuple(variable.shape)
        if kind == "kernel":
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif kind == "bias":
            value = rng.normal(0.0, 0.1, shape)
        elif kind == "residual_gamma":
            value = rng.uniform(0.2, 0.5, shape)
        elif kind == "residual_beta":  # centred: positive betas pile up along the identity path
            value = rng.normal(0.0, 0.1, shape)
        elif kind == "gamma" or kind == "positive":
            value = rng.uniform(0.5, 1.5, shape)
        elif kind == "beta":
            # Mostly positive: with half the ReLU units off, random networks turn chaotic
            # (a 1e-6 input change moved features by 1e-3) and float32 rounding alone would
            # exceed the parity tolerances.
            value = rng.uniform(0.5, 1.5, shape)
        elif kind == "zeros":
            value = np.zeros(shape)
        elif kind == "ones":
            value = np.ones(shape)
        else:
            raise ValueError(f"unknown initializer kind {kind!r} for {variable.name}")
        variable.assign(value.astype(variable.dtype.as_numpy_dtype))
        self.assigned.add(id(variable))


def keras_layers(model: tf.Module) -> list[tf.keras.layers.Layer]:
    """Every distinct Keras layer under the model (shared layers once)."""
    seen: dict[int, tf.keras.layers.Layer] = {}
    for module in model.submodules:
        if isinstance(module, tf.keras.layers.Layer):
            seen.setdefault(id(module), module)
    return list(seen.values())


def _init_layer(layer: tf.keras.layers.Layer, init: VariableInitializer) -> None:
    if not layer.built:  # never called (e.g. an unused FPNLite layer): it has no variables
        return
    if isinstance(layer, BatchNormalizationBase):
        # The last batch norm of a ResNet bottleneck (Keras names it "..._3_bn") scales the
        # residual branch: smaller gammas and centred betas keep a deep ResNet from
        # saturating its ReLU6s, where float32 rounding was amplified ~1000x (ResNet-152).
        residual = layer.name.endswith("_3_bn")
        init.assign(layer.gamma, "residual_gamma" if residual else "gamma")
        init.assign(layer.beta, "residual_beta" if residual else "beta")
        init.assign(layer.moving_mean, "zeros")
        init.assign(layer.moving_variance, "ones")
    elif isinstance(layer, tf.keras.layers.SeparableConv2D):
        kh, kw, in_channels, multiplier = layer.depthwise_kernel.shape
        init.assign(layer.depthwise_kernel, "kernel", kh * kw)
        init.assign(layer.pointwise_kernel, "kernel", in_channels * multiplier)
        init.assign(layer.bias, "bias")
    elif isinstance(layer, tf.keras.layers.DepthwiseConv2D):
        kh, kw = layer.depthwise_kernel.shape[:2]
        init.assign(layer.depthwise_kernel, "kernel", kh * kw)
        init.assign(layer.bias, "bias")
    elif isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)):
        kernel_shape = layer.kernel.shape
        init.assign(layer.kernel, "kernel", int(np.prod(kernel_shape[:-1])))
        init.assign(layer.bias, "bias")


def initialize(model: tf.Module, seed: int) -> list[str]:
    """Seeded values for every variable of a built model; returns the names given U(0.5, 1.5)
    because no layer type claimed them (e.g. BiFPN fusion weights)."""
    init = VariableInitializer(seed)
    for layer in keras_layers(model):
        _init_layer(layer, init)
    unclaimed = []
    for variable in model.variables:
        if id(variable) in init.assigned:
            continue
        if not variable.trainable:
            raise RuntimeError(f"non-trainable variable {variable.name} has no known role")
        init.assign(variable, "positive")
        unclaimed.append(variable.name)
    return unclaimed


@contextlib.contextmanager
def calibrating_batch_norms() -> Iterator[set[int]]:
    """While active, each BN call (eager) first sets its moving stats to its input's batch
    moments, then normalizes in inference mode; yields the ids of the calibrated layers."""
    original_call = BatchNormalizationBase.call
    calibrated: set[int] = set()

    def call(self, inputs, training=None, mask=None):  # type: ignore[no-untyped-def]
        values = tf.cast(inputs, tf.float32)
        channel_axes = [axis % values.shape.rank for axis in self.axis]
        reduce_axes = [axis for axis in range(values.shape.rank) if axis not in channel_axes]
        mean, variance = tf.nn.moments(values, reduce_axes)  # [channels] each
        # A tenth of the layer's mean square on every variance: channels that are nearly
        # constant over the calibration images (1x1 maps) would otherwise be divided by ~0,
        # amplifying rounding noise.
        variance += 0.1 * tf.reduce_mean(tf.square(mean) + variance)
        self.moving_mean.assign(tf.reshape(mean, self.moving_mean.shape))
        self.moving_variance.assign(tf.reshape(variance, self.moving_variance.shape))
        calibrated.add(id(self))
        return original_call(self, inputs, training=False, mask=mask)

    BatchNormalizationBase.call = call
    try:
        yield calibrated
    finally:
        BatchNormalizationBase.call = original_call


def calibrate_batch_norms(
    model: tf.Module, preprocessed: tf.Tensor, true_shapes: tf.Tensor
) -> dict:
    """Measures every BN's moving statistics on a batch of preprocessed images [B, H, W, 3].
    BNs the forward never reaches (e.g. EfficientNet's `top_bn`, after the last feature the
    extractor takes) keep mean 0 / variance 1 and are listed: they are in the checkpoint but
    cannot affect any output."""
    with calibrating_batch_norms() as calibrated:
        model.predict(preprocessed, true_shapes)
    bn_layers = [
        layer for layer in keras_layers(model) if isinstance(layer, BatchNormalizationBase)
    ]
    unused = [layer.name for layer in bn_layers if id(layer) not in calibrated]
    return {"calibrated": len(bn_layers) - len(unused), "not_reached": unused}


def _final_head_layer(head: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
    """The conv producing a box / class head's output: the last conv of its layer list."""
    layers = getattr(head, "_box_encoder_layers", None) or getattr(
        head, "_class_predictor_layers", []
    )
    convs = [
        layer
        for layer in layers
        if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.SeparableConv2D))
    ]
    if not convs:
        raise RuntimeError(f"head {head.name} ({type(head).__name__}): no output conv found")
    return convs[-1]


def _output_kernel(layer: tf.keras.layers.Layer) -> tf.Variable:
    return (
        layer.pointwise_kernel
        if isinstance(layer, tf.keras.layers.SeparableConv2D)
        else layer.kernel
    )


def scale_heads(model: tf.Module, preprocessed: tf.Tensor, seed: int) -> dict[str, list[float]]:
    """Rescales the last conv of each box / class head so its pre-bias output has the target std
    on every calibration image (at most), then draws its bias. Returns the std before scaling."""
    predictor = model._box_predictor
    heads_by_key = dict(predictor._prediction_heads)
    if "box_encodings" not in heads_by_key:  # WeightSharedConvolutionalBoxPredictor keeps it apart
        heads_by_key["box_encodings"] = predictor._box_prediction_head
    head_keys = {"box_encodings": "box", "class_predictions_with_background": "class"}
    finals = {}
    for key in head_keys:
        heads = heads_by_key[key]
        heads = heads if isinstance(heads, list) else [heads]
        finals[key] = [_final_head_layer(head) for head in heads]
        for layer in finals[key]:
            layer.bias.assign(tf.zeros_like(layer.bias))
    feature_maps = model._feature_extractor(preprocessed)
    outputs = predictor(feature_maps)  # key -> list over levels of [B, anchors_l, (1,) code]
    init = VariableInitializer(seed + 1)
    measured: dict[str, list[float]] = {}
    for key, kind in head_keys.items():
        layers = finals[key]
        if len(layers) == len(outputs[key]):  # one head per level
            per_head = [tf.reshape(output, [output.shape[0], -1]) for output in outputs[key]]
        else:  # one weight-shared head for all levels
            per_head = [
                tf.concat([tf.reshape(output, [output.shape[0], -1]) for output in outputs[key]], 1)
            ]
        target = CLASS_LOGIT_STD if kind == "class" else BOX_ENCODING_STD
        measured[key] = []
        for layer, values in zip(layers, per_head, strict=True):
            # the widest image sets the scale: calibration images can differ a lot (e.g. by
            # padding), and scores of the widest one must not saturate at 1.0
            std = float(tf.reduce_max(tf.math.reduce_std(values, axis=1)))  # values: [B, outputs]
            measured[key].append(std)
            kernel = _output_kernel(layer)
            kernel.assign(kernel * (target / max(std, 1e-12)))
            rng = init.rng(layer.bias)
            if kind == "class":
                bias = rng.normal(CLASS_BIAS_MEAN, 0.5, layer.bias.shape)
            else:
                bias = rng.normal(0.0, 0.2, layer.bias.shape)
            layer.bias.assign(bias.astype(np.float32))
    return measured


def realistic_weights(
    model: tf.Module, preprocessed: tf.Tensor, true_shapes: tf.Tensor, seed: int
) -> dict:
    """Initializes, calibrates BNs and scales heads; returns a summary for meta.json."""
    unclaimed = initialize(model, seed)
    batch_norms = calibrate_batch_norms(model, preprocessed, true_shapes)
    head_std = scale_heads(model, preprocessed, seed)
    return {
        "num_variables": len(model.variables),
        "batch_norms": batch_norms,
        "uniform_0.5_1.5_variables": unclaimed,
        "head_output_std_before_scaling": head_std,
    }

"""The class rows of a detector's heads, remapped onto the project's labels.

When the first training round fine-tunes from the ``--initial_model``'s weights, a class
layer restored by position would give project label ``i`` the weights of the model's class
``i``, whatever that class is (``--initial_labels fox=raccoon,raccoon=fox``, or a model whose
label map lists the same classes in another order). So before the restore, each class layer's
rows are rearranged: project label ``L`` takes the rows of the model class mapped onto it
(``InitialModel.class_map``), the background rows stay, and a label no model class maps onto
keeps the freshly built model's rows (the config's initializer), as does every class layer
whose layout cannot be matched.

Class layers, per family (``class_layers``), each a tensor whose dim 0 is
``[groups, class slots, rows per class]`` flattened:

- SSD (convolutional and weight-shared predictors): the class predictor conv of each map,
  ``anchors x (1 + classes)`` output channels (no background slot with
  ``add_background_class: false``, as EfficientDet's);
- Faster R-CNN: the second stage's class dense layer (``1 + classes``, and its batch norm),
  its per-class box encoder (``classes x box code``, unless ``share_box_across_classes``)
  and the mask head's last conv (``classes``, unless class agnostic); R-FCN's
  position-sensitive class and box convs (``bins`` groups);
- CenterNet: the object-center heatmap conv (``classes``, no background).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from objdet.atomic import atomic_write
from objdet.errors import ObjdetError

logger = logging.getLogger(__name__)

_WEIGHTED = (nn.Conv2d, nn.Linear)
_NORMS = (nn.modules.batchnorm._BatchNorm,)


@dataclass(frozen=True)
class ClassLayer:
    """A state_dict tensor whose dim 0 holds ``groups x (background + classes) x rows_per_class``
    rows (anchor-major for SSD, bin-major for R-FCN)."""

    name: str
    groups: int = 1
    rows_per_class: int = 1
    background: bool = False  # slot 0 of each group is the background class


def class_layers(model: nn.Module) -> list[ClassLayer]:
    """Every tensor of ``model``'s state_dict whose rows are per class (see the module
    docstring); ``ObjdetError`` for a model of no family known here."""
    from objdet.models.heads.box_predictors import (
        ConvolutionalBoxPredictor,
        WeightSharedConvolutionalBoxPredictor,
    )
    from objdet.models.heads.rfcn_box_predictor import RfcnBoxPredictor
    from objdet.models.meta_arch.center_net import OBJECT_CENTER, CenterNet
    from objdet.models.meta_arch.faster_rcnn import FasterRCNN
    from objdet.models.meta_arch.faster_rcnn_heads import MaskRcnnBoxPredictor
    from objdet.models.meta_arch.ssd import SSD

    names = {id(module): name for name, module in model.named_modules()}
    layers: list[ClassLayer] = []

    def add(head: nn.Module, slots: int, rows_per_class: int = 1, background: bool = False) -> None:
        # [groups * slots * rows_per_class] output rows; groups = anchors or bins
        for name, tensor in _output_tensors(head, names):
            groups, remainder = divmod(tensor.shape[0], slots * rows_per_class)
            if remainder:
                raise ObjdetError(f"{name}: {tensor.shape[0]} rows are not a multiple of {slots} class slots")
            layers.append(ClassLayer(name, groups, rows_per_class, background))

    num_classes = int(getattr(model, "num_classes", 0))
    if isinstance(model, SSD):
        predictor = model.box_predictor
        if isinstance(predictor, ConvolutionalBoxPredictor | WeightSharedConvolutionalBoxPredictor):
            slots = predictor.num_class_slots
            background = slots == num_classes + 1  # else add_background_class: false
            heads = (predictor.class_heads if isinstance(predictor, ConvolutionalBoxPredictor)
                     else [predictor.class_head])
            for head in heads:
                add(head, slots, background=background)
    elif isinstance(model, FasterRCNN):  # R-FCN included
        box_predictor = model.box_predictor
        if isinstance(box_predictor, MaskRcnnBoxPredictor):
            add(box_predictor.class_head, num_classes + 1, background=True)
            if box_predictor.num_boxes == num_classes:
                add(box_predictor.box_head, num_classes, rows_per_class=box_predictor.box_code_size)
        elif isinstance(box_predictor, RfcnBoxPredictor):
            add(box_predictor.class_predictions, num_classes + 1, background=True)
            add(box_predictor.refined_locations, num_classes, rows_per_class=box_predictor.box_code_size)
        if model.mask_head is not None and model.mask_head.num_masks == num_classes:
            add(model.mask_head.layers, num_classes)
    elif isinstance(model, CenterNet):
        for head in model.heads[OBJECT_CENTER].children():  # one per feature output
            add(head, num_classes)
    else:
        raise ObjdetError(f"{type(model).__name__}: no known class layers to remap")
    return layers


def _output_tensors(head: nn.Module, names: dict[int, str]) -> list[tuple[str, Tensor]]:
    """(state_dict name, tensor) of ``head``'s last conv or dense layer and any batch norm
    after it: the layers whose rows are the head's outputs."""
    modules = [module for module in head.modules() if isinstance(module, _WEIGHTED + _NORMS)]
    last = max(index for index, module in enumerate(modules) if isinstance(module, _WEIGHTED))
    return [(f"{names[id(module)]}.{key}", tensor)
            for module in modules[last:] for key, tensor in module.state_dict().items()
            if tensor.dim() > 0]  # not a batch norm's num_batches_tracked


def remap_class_rows(own: dict[str, Tensor], source: dict[str, Tensor], layers: list[ClassLayer],
                     class_map: dict[int, int], source_num_classes: int) -> dict[str, Tensor]:
    """``own``'s class-layer tensors with the rows of ``source`` (a model of
    ``source_num_classes`` classes) moved to where ``class_map`` (model class id -> project
    label id) says; labels no class maps onto keep ``own``'s rows. A layer whose source
    tensor is absent or of another layout is left out (it starts fresh)."""
    # several model classes mapped onto one label: the first in class_map's order gives its
    # rows (the order of --initial_labels; model class id order when mapped by name)
    source_of: dict[int, int] = {}
    for model_class, label in class_map.items():
        source_of.setdefault(label, model_class)
    remapped: dict[str, Tensor] = {}
    for layer in layers:
        target, tensor = own[layer.name], source.get(layer.name)
        background = int(layer.background)
        source_rows = layer.groups * (background + source_num_classes) * layer.rows_per_class
        if tensor is None or tensor.shape[0] != source_rows or tensor.shape[1:] != target.shape[1:]:
            continue
        rest = tuple(target.shape[1:])
        out = target.detach().clone().reshape(layer.groups, -1, layer.rows_per_class, *rest)  # [G, S, R, ...]
        rows = tensor.detach().reshape(layer.groups, -1, layer.rows_per_class, *rest)  # [G, S_source, R, ...]
        if background:
            out[:, 0] = rows[:, 0]
        for label, model_class in source_of.items():
            if 1 <= label <= out.shape[1] - background and 1 <= model_class <= source_num_classes:
                out[:, background + label - 1] = rows[:, background + model_class - 1]
        remapped[layer.name] = out.reshape(target.shape)
    return remapped


@dataclass(frozen=True)
class RemappedWeights:
    path: Path  # the state_dict to fine-tune from (type detection)
    remapped: list[str]  # class-layer tensors with remapped rows
    fresh: list[str]  # class-layer tensors left to the config's initializer


def write_remapped_weights(model: nn.Module, weights_path: str | os.PathLike[str], class_map: dict[int, int],
                           source_num_classes: int, output_path: Path) -> RemappedWeights:
    """The state_dict at ``weights_path`` with its class layers remapped onto ``model``'s
    classes (``model`` freshly built from the project's config: its rows are the fresh
    ones), written atomically to ``output_path``."""
    from objdet.engine.fine_tune import read_state_dict

    source = read_state_dict(weights_path)
    try:
        layers = class_layers(model)
    except ObjdetError as error:  # a family without a known layout: restored by name and shape
        logger.warning("%s; its class rows are restored by position", error)
        layers = []
    remapped = remap_class_rows(model.state_dict(), source, layers, class_map, source_num_classes)
    # every class layer not remapped is left out, so it is not restored by position either
    weights = {name: tensor for name, tensor in source.items()
               if name not in {layer.name for layer in layers}} | remapped
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(output_path) as handle:
        torch.save(weights, handle)
    return RemappedWeights(output_path, sorted(remapped),
                           sorted(layer.name for layer in layers if layer.name not in remapped))

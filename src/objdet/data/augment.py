"""Data augmentation: the step interface, the pipeline, and helpers every step shares.

The OD API's ``data_augmentation_options`` are implemented as small step classes in
``augment_geometric``, ``augment_crop`` and ``augment_color``; ``augment_builder`` turns the
``PreprocessingStep`` config messages into them. Each step is a callable

    step(sample: Sample, generator: torch.Generator) -> Sample

that returns a *new* ``Sample`` and never mutates its input. All randomness is drawn from the
explicit ``generator`` so a (seed, epoch, index) triple reproduces a sample exactly.

Conventions (DESIGN.md): ``sample.image`` is ``Tensor[3, H, W]`` uint8 RGB (float32 after a
``normalize_image`` step); boxes are ``Tensor[N, 4]`` float32 (x1, y1, x2, y2) absolute pixels;
keypoints ``Tensor[N, K, 2]`` (x, y) absolute pixels. Pixel values are on the OD API's [0, 255]
scale. Steps that change the image drop ``encoded_image`` (the bytes no longer match) and
geometric steps drop stored ``detection_*`` fields (they are inference outputs, not training
targets, and would no longer line up with the image).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from objdet.structures.sample import Sample

# Per-object fields of ``Sample`` whose first dimension is the object index. Keep in sync with
# ``objdet.structures.sample.Sample``; a crop or a box filter must select all of them together.
PER_OBJECT_TENSOR_FIELDS = (
    "boxes",
    "labels",
    "difficult",
    "is_crowd",
    "group_of",
    "weights",
    "areas",
    "masks",
    "keypoints",
    "keypoint_visibilities",
)


class Augmentation(Protocol):
    """One data augmentation step."""

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample: ...


class AugmentationPipeline:
    """Steps applied in order, like the OD API's ``preprocessor.preprocess``.

    Args:
        steps: the augmentation steps, applied first to last.
    """

    def __init__(self, steps: Sequence[Augmentation]) -> None:
        self.steps: tuple[Augmentation, ...] = tuple(steps)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        for step in self.steps:
            sample = step(sample, generator)
        return sample

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        inner = ", ".join(repr(step) for step in self.steps)
        return f"AugmentationPipeline([{inner}])"


def require_image(sample: Sample, step_name: str) -> Tensor:
    """The decoded image ``Tensor[C, H, W]``; a clear error when the sample was not decoded."""
    if sample.image is None:
        raise ValueError(
            f"{step_name} needs a decoded image, but sample {sample.filename or sample.source_id!r}"
            " has image=None (decode it first)"
        )
    return sample.image


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from ``[low, high)``."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def uniform_tensor(
    generator: torch.Generator, shape: tuple[int, ...], low: float, high: float
) -> Tensor:
    """``Tensor[shape]`` float32 drawn uniformly from ``[low, high)``."""
    return low + (high - low) * torch.rand(shape, generator=generator)


def random_integer(generator: torch.Generator, low: int, high: int) -> int:
    """One int drawn uniformly from ``[low, high)`` (the OD API's ``_random_integer``)."""
    return int(torch.randint(low, high, (), generator=generator))


def happens(generator: torch.Generator, probability: float) -> bool:
    """True with the given probability; always draws one number so the stream stays aligned."""
    return float(torch.rand((), generator=generator)) < probability


def with_new_image(sample: Sample, image: Tensor, **changes: Any) -> Sample:
    """A copy of ``sample`` with a new image of the same size (color steps)."""
    return dataclasses.replace(sample, image=image, encoded_image=None, **changes)


def with_new_geometry(sample: Sample, image: Tensor, **changes: Any) -> Sample:
    """A copy of ``sample`` whose image (and usually boxes) moved: size follows ``image``."""
    return dataclasses.replace(
        sample,
        image=image,
        height=int(image.shape[-2]),
        width=int(image.shape[-1]),
        encoded_image=None,
        detection_boxes=None,
        detection_scores=None,
        detection_labels=None,
        **changes,
    )


def select_objects(sample: Sample, keep: Tensor) -> dict[str, Any]:
    """Every per-object field of ``sample`` indexed by ``keep`` (bool mask or int64 indices).

    Returns a dict of field name -> selected value, ready for ``dataclasses.replace``; fields
    that are ``None`` stay ``None``. ``label_texts`` (a Python list) is selected too.
    """
    if keep.dtype == torch.bool:
        keep = keep.nonzero().flatten()
    selected: dict[str, Any] = {}
    for name in PER_OBJECT_TENSOR_FIELDS:
        value = getattr(sample, name)
        selected[name] = None if value is None else value[keep]
    if sample.label_texts is not None:
        selected["label_texts"] = [sample.label_texts[int(index)] for index in keep]
    return selected


def check_probability(name: str, value: float) -> None:
    """Constructor validation shared by the steps: ``value`` must lie in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def check_range(name_low: str, low: float, name_high: str, high: float) -> None:
    """Constructor validation: ``low <= high``."""
    if low > high:
        raise ValueError(f"{name_low} ({low}) must be <= {name_high} ({high})")

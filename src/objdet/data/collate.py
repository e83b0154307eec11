"""Batching ``Sample``s into the model contract: ``(images, targets)`` lists.

``images[i]`` is ``Tensor[3, H_i, W_i]`` float32 in [0, 1] (uint8 images are divided by 255;
an image that a ``normalize_image`` step already made float is passed through as the user
configured it). ``targets[i]`` holds only tensors, so ``{k: v.to(device)}`` works:

* ``boxes``: ``Tensor[N, 4]`` float32 (x1, y1, x2, y2) absolute pixels of ``images[i]``;
* ``labels``: ``Tensor[N]`` int64 label-map ids;
* ``weights``: ``Tensor[N]`` float32 (ones when the data has none, as in the OD API);
* ``record_index``: ``Tensor[]`` int64, the dataset position the sample came from;
* when present in the data: ``difficult``, ``is_crowd``, ``group_of`` (``Tensor[N]`` bool),
  ``masks`` (``Tensor[N, H, W]`` uint8), ``keypoints`` (``Tensor[N, K, 2]`` float32),
  ``keypoint_visibilities`` (``Tensor[N, K]`` bool).

In a DataLoader worker the batch's tensors are copied into one shared-memory buffer per
dtype and handed over as views of it. Sent one by one, each of the ~100 tensors of a batch
would get its own shared-memory file, file descriptor and mapping in both processes: on the
main job a batch of 16 took the worker 185 ms that way and 140 ms packed, and the training
process 37.6 ms of CPU to receive it, 6.8 ms packed (benchmarks/RESULTS.md, "input pipeline
costs").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from objdet.errors import ObjdetError
from objdet.structures.sample import Sample

OPTIONAL_TARGET_FIELDS = (
    "difficult",
    "is_crowd",
    "group_of",
    "masks",
    "keypoints",
    "keypoint_visibilities",
)


def image_to_unit_float(image: Tensor) -> Tensor:
    """``Tensor[3, H, W]`` uint8 -> float32 in [0, 1]; float images are returned unchanged."""
    if image.dtype == torch.uint8:
        return image.div(255.0)  # one pass: uint8 / float promotes to float32
    return image.float()


def sample_to_target(sample: Sample, record_index: int = -1) -> dict[str, Tensor]:
    """The training target dict of one sample (see the module docstring)."""
    weights = sample.weights
    if weights is None:
        weights = torch.ones(sample.num_objects, dtype=torch.float32)
    target = {
        "boxes": sample.boxes.float(),
        "labels": sample.labels.long(),
        "weights": weights.float(),
        "record_index": torch.tensor(record_index, dtype=torch.int64),
    }
    for name in OPTIONAL_TARGET_FIELDS:
        value = getattr(sample, name)
        if value is not None:
            target[name] = value
    return target


@dataclass(frozen=True)
class FailedRecord:
    """A record a DataLoader worker could not load, handed to the main process as data.

    An exception raised in a worker reaches the main process with the worker's whole
    traceback pasted into its message; carried as data, the main process re-raises the
    error with its own one-line message (``objdet.data.dataset``'s loader does).
    """

    error_type: type[ObjdetError]
    message: str

    def reraise(self) -> None:
        raise self.error_type(self.message)


def collate_samples(
    batch: Sequence[tuple[int, Sample | FailedRecord]],
) -> tuple[list[Tensor], list[dict[str, Tensor]]] | FailedRecord:
    """DataLoader ``collate_fn``: ``(record_index, Sample)`` pairs -> ``(images, targets)``.

    A batch holding a ``FailedRecord`` becomes that ``FailedRecord`` (the first one).
    """
    for _, sample in batch:
        if isinstance(sample, FailedRecord):
            return sample
    images: list[Tensor] = []
    targets: list[dict[str, Tensor]] = []
    for record_index, sample in batch:
        assert isinstance(sample, Sample)
        if sample.image is None:
            raise ValueError(f"sample {sample.filename or sample.source_id!r} has no decoded image")
        images.append(image_to_unit_float(sample.image))
        targets.append(sample_to_target(sample, record_index))
    if get_worker_info() is None:
        return images, targets  # same process: nothing to hand over
    tensors = images + [value for target in targets for value in target.values()]
    packed = iter(pack_into_shared_memory(tensors))
    images = [next(packed) for _ in images]
    targets = [{name: next(packed) for name in target} for target in targets]
    return images, targets


def pack_into_shared_memory(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Contiguous copies of ``tensors`` (same shapes and dtypes), all tensors of a dtype
    being views of one new shared-memory buffer, so they cross to another process at once."""
    totals: dict[torch.dtype, int] = {}
    for tensor in tensors:
        totals[tensor.dtype] = totals.get(tensor.dtype, 0) + tensor.numel()
    buffers = {  # allocated in shared memory directly, as torch's default_collate does in workers
        dtype: torch.empty(0, dtype=dtype).set_(
            torch.UntypedStorage._new_shared(max(total, 1) * dtype.itemsize), 0, (total,), (1,)
        )
        for dtype, total in totals.items()
    }
    offsets = dict.fromkeys(totals, 0)
    packed = []
    for tensor in tensors:
        start, count = offsets[tensor.dtype], tensor.numel()
        view = buffers[tensor.dtype][start : start + count].view(tensor.shape)
        view.copy_(tensor)
        packed.append(view)
        offsets[tensor.dtype] = start + count
    return packed

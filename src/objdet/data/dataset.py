"""The input pipeline: a dataset and data loader from an ``InputReader`` config.

``build_dataset`` is the one place reading ``objdet.protos.input_reader_pb2.InputReader``
messages. The dataset is map-style over a random-access index of the TFRecord files (only
record offsets are held in memory), so shuffling is a full permutation per epoch rather than
the OD API's bounded ``shuffle_buffer_size`` window.

How the OD API's input_reader fields map here:

* ``tf_record_input_reader.input_path``: files, globs, ``name@N`` shards (``expand_input_paths``).
* ``label_map_path``, ``use_display_name``: class texts -> label-map ids (decoder).
* ``shuffle``: per-epoch permutation seeded by (seed, epoch) in training loaders.
* ``num_epochs``: passes over the data; 0 repeats forever (the loader's sampler never ends
  and the trainer stops after its step count, as with the OD API's ``num_steps``).
* ``sample_1_of_n_examples``: keeps records 0, n, 2n, ... of the concatenated files.
* ``max_number_of_boxes``: objects beyond it are cut after augmentation (as the OD API pads
  or clips after augmenting); every cut is logged with a running count, never silent.
* ``load_instance_masks``, ``num_keypoints``: decode masks / keypoints.
* ``shuffle_buffer_size``, ``filenames_shuffle_buffer_size``, ``num_readers``,
  ``read_block_length``, ``num_parallel_batches``, ``num_prefetch_batches`` and the
  deprecated queue fields tune TensorFlow's streaming reader; a full permutation and
  ``build_data_loader(num_workers=...)`` supersede them.
* ``mask_type``, ``include_source_id``: the decoder reads PNG and numerical masks as
  stored, and always keeps ``image/source_id``.
* Fields this reader cannot honour yet (sequence examples, additional channels, dense pose,
  track ids, multiclass scores, context features, keypoint depth, per-keypoint weights,
  label hierarchy expansion, dataset mixing weights, per-input image resizer, external
  readers) raise ``ConfigError`` naming the field when set.

Bad records: a record that does not load (a corrupt or truncated image, an image above the
pixel limit, a box out of range, a label missing from the label map...) stops training or
evaluation with a ``DataError`` naming the record (``file#index (offset N)``) and the
problem; records are never skipped silently (``objdet records verify`` and reconverting
fix the data). Errors raised in DataLoader workers reach the caller as the same one-line
error (``FailedRecord``), not as a worker traceback. Input files holding 0 records are a
``DataError`` naming the input_reader field and the files.

Randomness: the sample at loader position ``p`` (= epoch * len + record position) is augmented
with a ``torch.Generator`` seeded from ``(seed, p)``, so results do not depend on the number
of workers or which worker loads what.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from objdet.data.augment import AugmentationPipeline, select_objects
from objdet.data.augment_builder import build_augmentations
from objdet.data.collate import FailedRecord, collate_samples
from objdet.data.example import ExampleDecoder
from objdet.data.resize import Resizer, resize_sample
from objdet.data.tfrecord_index import IndexedTFRecords
from objdet.errors import ConfigError, DataError, ObjdetError
from objdet.protos import input_reader_pb2
from objdet.structures.label_map import load_label_map
from objdet.structures.sample import Sample

logger = logging.getLogger(__name__)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, epoch, position, ...); stable everywhere."""
    digest = hashlib.blake2b(struct.pack(f"<{len(parts)}q", *parts), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class TFRecordDetectionDataset(Dataset[tuple[int, Sample | FailedRecord]]):
    """Decoded (and, for training, augmented) ``Sample``s from TFRecord files of tf.Examples.

    ``dataset[p]`` returns ``(record_index, sample)`` where ``record_index`` is the record's
    number in the concatenated input files and ``p`` may exceed ``len(dataset)``: position
    ``p`` reads record position ``p % len`` in epoch ``p // len`` (the epoch only changes the
    augmentation draw). ``sample.image`` is ``Tensor[3, H, W]`` uint8 RGB; boxes are
    ``Tensor[N, 4]`` float32 (x1, y1, x2, y2) absolute pixels.

    Args:
        input_paths: files, globs or ``name@N`` sharded specs.
        decoder: the configured tf.Example decoder.
        augmentation: steps applied to every sample, or None (evaluation).
        sample_1_of_n_examples: keep every n-th record.
        max_number_of_boxes: keep at most this many objects per image; <= 0 keeps all.
        num_keypoints: expected keypoints per object when > 0 (checked).
        shuffle, num_epochs: how a training loader should iterate (see ``build_data_loader``).
        seed: base seed of shuffling and augmentation.
        image_resizer: the model's resizer, applied after augmentation (see
            ``objdet.data.resize``); None keeps the decoded size.
    """

    def __init__(
        self,
        input_paths: Sequence[str] | str,
        *,
        decoder: ExampleDecoder,
        augmentation: AugmentationPipeline | None = None,
        sample_1_of_n_examples: int = 1,
        max_number_of_boxes: int = 0,
        num_keypoints: int = 0,
        shuffle: bool = True,
        num_epochs: int = 0,
        seed: int = 0,
        image_resizer: Resizer | None = None,
    ) -> None:
        if sample_1_of_n_examples < 1:
            raise ValueError(f"sample_1_of_n_examples must be >= 1, got {sample_1_of_n_examples}")
        self.records = IndexedTFRecords(input_paths)
        self.record_numbers = range(0, len(self.records), sample_1_of_n_examples)
        self.decoder = decoder
        self.augmentation = augmentation
        self.max_number_of_boxes = max_number_of_boxes
        self.num_keypoints = num_keypoints
        self.shuffle = shuffle
        self.num_epochs = num_epochs
        self.seed = seed
        self.image_resizer = image_resizer
        self.truncated_images = 0  # per process: each DataLoader worker counts its own

    def __len__(self) -> int:
        return len(self.record_numbers)

    def __getitem__(self, position: int) -> tuple[int, Sample | FailedRecord]:
        record_number = self._record_number(position)
        try:
            return record_number, self.load(position)
        except ObjdetError as error:
            if get_worker_info() is None:  # the main process: the error reaches the caller
                raise
            return record_number, FailedRecord(type(error), str(error))

    def describe_inputs(self) -> str:
        """The input files and their record counts, for messages."""
        return ", ".join(
            f"{index.path} ({len(index)} records)" for index in self.records.indexes
        )

    def _record_number(self, position: int) -> int:
        if position < 0 or len(self) == 0:
            raise IndexError(
                f"position {position} out of range for a dataset of {len(self)} records"
            )
        return self.record_numbers[position % len(self)]

    def load(self, position: int) -> Sample:
        """The sample at loader position ``position`` (see the class docstring)."""
        record_number = self._record_number(position)
        source = self.records.source(record_number)
        sample = self.decoder(self.records[record_number], source)
        # The pixels are decoded; the bytes would only cost memory and IPC from here on.
        sample = dataclasses.replace(sample, encoded_image=None)
        self._check_keypoints(sample, source)
        if self.augmentation is not None and len(self.augmentation):
            generator = torch.Generator().manual_seed(derive_seed(self.seed, position))
            sample = self.augmentation(sample, generator)
        sample = self._limit_boxes(sample, source)
        return sample if self.image_resizer is None else resize_sample(sample, self.image_resizer)

    def _check_keypoints(self, sample: Sample, source: str) -> None:
        if self.num_keypoints > 0 and sample.keypoints is not None:
            found = int(sample.keypoints.shape[1])
            if found != self.num_keypoints:
                raise DataError(
                    f"{source}: {found} keypoints per object, but the input reader's "
                    f"num_keypoints is {self.num_keypoints}"
                )

    def _limit_boxes(self, sample: Sample, source: str) -> Sample:
        limit = self.max_number_of_boxes
        if limit <= 0 or sample.num_objects <= limit:
            return sample
        self.truncated_images += 1
        logger.warning(
            "%s: %d objects, max_number_of_boxes is %d: dropped the last %d "
            "(%d images truncated so far in this process)",
            source,
            sample.num_objects,
            limit,
            sample.num_objects - limit,
            self.truncated_images,
        )
        return dataclasses.replace(sample, **select_objects(sample, torch.arange(limit)))


class EpochSampler(Sampler[int]):
    """Loader positions for ``TFRecordDetectionDataset``: ``epoch * len + record position``.

    Args:
        num_records: ``len(dataset)``.
        shuffle: permute each epoch with a generator seeded by (seed, epoch).
        num_epochs: passes over the data; 0 = forever (``len()`` then raises TypeError).
        seed: base seed.
        rank, world_size: this process's share for distributed training; every rank gets
            the same number of positions (the permutation wraps around to pad, as
            torch's DistributedSampler does).
        start_epoch: first epoch to yield.
        start_position: positions of this rank's stream already consumed (resuming a run
            mid-epoch: the stream continues exactly where it stopped).
    """

    def __init__(
        self,
        num_records: int,
        *,
        shuffle: bool,
        num_epochs: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_epoch: int = 0,
        start_position: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if num_records <= 0:
            raise ValueError("cannot sample from a dataset with 0 records")
        self.num_records = num_records
        self.shuffle = shuffle
        self.num_epochs = num_epochs
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.per_rank = -(-num_records // world_size)  # ceil
        skipped_epochs, self.skip_in_epoch = divmod(start_position, self.per_rank)
        self.start_epoch = start_epoch + skipped_epochs

    def epoch_positions(self, epoch: int) -> torch.Tensor:
        """``Tensor[per_rank]`` int64 loader positions of this rank in ``epoch``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0x5F))
            order = torch.randperm(self.num_records, generator=generator)
        else:
            order = torch.arange(self.num_records)
        padded = order.repeat(-(-self.per_rank * self.world_size // self.num_records))
        mine = padded[: self.per_rank * self.world_size][self.rank :: self.world_size]
        return mine + epoch * self.num_records

    def __iter__(self) -> Iterator[int]:
        epoch, skip = self.start_epoch, self.skip_in_epoch
        while self.num_epochs == 0 or epoch < self.num_epochs:
            yield from self.epoch_positions(epoch).tolist()[skip:]
            epoch, skip = epoch + 1, 0

    def __len__(self) -> int:
        if self.num_epochs == 0:
            raise TypeError("an EpochSampler with num_epochs=0 repeats forever and has no length")
        return max(self.per_rank * (self.num_epochs - self.start_epoch) - self.skip_in_epoch, 0)


def build_data_loader(
    dataset: TFRecordDetectionDataset,
    batch_size: int,
    num_workers: int,
    training: bool,
    *,
    rank: int = 0,
    world_size: int = 1,
    start_epoch: int = 0,
    start_position: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
) -> DataLoader[Any]:
    """A DataLoader yielding ``(images, targets)`` batches (``objdet.data.collate``).

    Training: the dataset's ``shuffle`` and ``num_epochs`` (0 = forever), incomplete last
    batches dropped. Evaluation: one pass in record order, nothing dropped, no shuffling.
    Workers are persistent (no re-fork per epoch); results do not depend on ``num_workers``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:
        raise DataError(
            f"no records to read: the input files hold 0 records: {dataset.describe_inputs()}"
        )
    sampler = EpochSampler(
        len(dataset),
        shuffle=training and dataset.shuffle,
        num_epochs=dataset.num_epochs if training else 1,
        seed=dataset.seed,
        rank=rank,
        world_size=world_size,
        start_epoch=start_epoch if training else 0,
        start_position=start_position if training else 0,
    )
    return DetectionDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        drop_last=training,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(derive_seed(dataset.seed, rank, 0x3C)),
    )


class DetectionDataLoader(DataLoader[Any]):
    """A DataLoader that re-raises a ``FailedRecord`` from a worker as its one-line error."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for batch in super().__iter__():
            if isinstance(batch, FailedRecord):
                batch.reraise()
            yield batch


def _seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's global RNGs from torch's per-worker seed (torch seeds itself)."""
    import random

    import numpy as np

    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


# InputReader fields (and the value that means "unused") this reader cannot honour yet.
_UNSUPPORTED_FIELDS = {
    "num_additional_channels": 0,
    "load_multiclass_scores": False,
    "load_context_features": False,
    "load_dense_pose": False,
    "load_track_id": False,
    "load_keypoint_depth_features": False,
    "expand_labels_hierarchy": False,
}


def check_input_reader(config: Any) -> None:
    """``ConfigError`` for an input_reader field that is set but not implemented, or for a
    reader that is not a tf_record_input_reader with input paths (every reader of TFRecords
    calls it: ``build_dataset``, offline evaluation)."""
    name = config.name or "input_reader"
    for field, unused in _UNSUPPORTED_FIELDS.items():
        value = getattr(config, field)
        if value != unused:
            raise ConfigError(f"{name}.{field}: {value} is not supported yet (only {unused})")
    if config.input_type == input_reader_pb2.TF_SEQUENCE_EXAMPLE:
        raise ConfigError(
            f"{name}.input_type: TF_SEQUENCE_EXAMPLE is not supported yet (only TF_EXAMPLE)"
        )
    if config.keypoint_type_weight:
        raise ConfigError(
            f"{name}.keypoint_type_weight: per-keypoint loss weights are not supported yet"
        )
    if config.sample_from_datasets_weights:
        raise ConfigError(
            f"{name}.sample_from_datasets_weights: mixing datasets is not supported yet"
        )
    if config.HasField("image_resizer"):
        raise ConfigError(
            f"{name}.image_resizer: a per-input image resizer is not supported yet; "
            "set model.*.image_resizer instead"
        )
    reader = config.WhichOneof("input_reader")
    if reader != "tf_record_input_reader":
        found = reader or "nothing"
        raise ConfigError(
            f"{name}: expected tf_record_input_reader {{ input_path: ... }}, found {found}"
        )
    if not config.tf_record_input_reader.input_path:
        raise ConfigError(f"{name}.tf_record_input_reader.input_path: no input path given")
    if config.sample_1_of_n_examples < 1:
        raise ConfigError(
            f"{name}.sample_1_of_n_examples must be >= 1, got {config.sample_1_of_n_examples}"
        )


def build_dataset(
    input_reader_config: Any,
    *,
    training: bool,
    augmentation_steps: Sequence[Any] = (),
    seed: int = 0,
    image_resizer: Resizer | None = None,
    config_field: str | None = None,
) -> TFRecordDetectionDataset:
    """A dataset from an ``objdet.protos.input_reader_pb2.InputReader`` message.

    Args:
        input_reader_config: ``train_input_reader`` or one ``eval_input_reader``.
        training: apply ``augmentation_steps`` (evaluation never augments, as in the OD API).
        augmentation_steps: ``train_config.data_augmentation_options`` (PreprocessingStep
            messages), built by ``build_augmentations``.
        seed: base seed of shuffling and augmentation.
        image_resizer: the model's resizer, to resize in the loader workers (training).
        config_field: the reader's place in the pipeline config, for errors (default
            ``train_input_reader`` / ``eval_input_reader`` by ``training``).

    Missing input files, and input files holding 0 records, raise ``DataError``;
    unsupported fields and steps ``ConfigError``.
    """
    config = input_reader_config
    if config_field is None:
        config_field = "train_input_reader" if training else "eval_input_reader"
    check_input_reader(config)
    label_map = load_label_map(config.label_map_path) if config.label_map_path else None
    decoder = ExampleDecoder(
        label_map=label_map,
        use_display_name=config.use_display_name,
        with_masks=config.load_instance_masks,
        with_keypoints=config.num_keypoints > 0,
        with_detections=False,  # stored detections are batch-inference output, not targets
    )
    augmentation = build_augmentations(augmentation_steps) if training else None
    dataset = TFRecordDetectionDataset(
        list(config.tf_record_input_reader.input_path),
        decoder=decoder,
        augmentation=augmentation,
        sample_1_of_n_examples=config.sample_1_of_n_examples,
        max_number_of_boxes=config.max_number_of_boxes,
        num_keypoints=config.num_keypoints,
        shuffle=config.shuffle,
        num_epochs=config.num_epochs,
        seed=seed,
        image_resizer=image_resizer,
    )
    if len(dataset) == 0:
        raise DataError(
            f"{config_field}.tf_record_input_reader.input_path: the input files hold 0 records: "
            f"{dataset.describe_inputs()}"
        )
    return dataset

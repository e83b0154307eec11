"""The input pipeline over the real raccoon TFRecord (40 records) from InputReader configs."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from objdet.data.dataset import EpochSampler, build_data_loader, build_dataset
from objdet.errors import ConfigError, DataError
from objdet.protos import input_reader_pb2, train_pb2

NUM_RECORDS = 40


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Image-sized element-wise ops run 3-4x faster on one thread when cores are shared (CI has
    2); DataLoader workers use one thread anyway. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reader_config(raccoon_dir: Path, extra: str = "") -> input_reader_pb2.InputReader:
    text = f"""
        label_map_path: "{raccoon_dir / "object-detection.pbtxt"}"
        tf_record_input_reader {{ input_path: "{raccoon_dir / "tfrecord" / "test.record"}" }}
        {extra}
    """
    return text_format.Parse(text, input_reader_pb2.InputReader())


def augmentation_steps(text: str) -> list:
    return list(text_format.Parse(text, train_pb2.TrainConfig()).data_augmentation_options)


FLIP_AND_CROP = """
    data_augmentation_options { random_horizontal_flip { } }
    data_augmentation_options { ssd_random_crop { } }
"""


def batches_as_lists(
    loader, count: int | None = None
) -> list[tuple[list[int], list[list[list[float]]]]]:
    """(record indices, boxes) of each batch, for comparing two loaders."""
    result = []
    for images, targets in itertools.islice(loader, count):
        result.append(
            ([int(t["record_index"]) for t in targets], [t["boxes"].tolist() for t in targets])
        )
    return result


def test_eval_loader_yields_contract_batches_in_record_order(raccoon_dir: Path) -> None:
    dataset = build_dataset(reader_config(raccoon_dir), training=False)
    assert len(dataset) == NUM_RECORDS
    loader = build_data_loader(dataset, batch_size=8, num_workers=0, training=False)
    seen = []
    for images, targets in loader:
        assert len(images) == len(targets) <= 8
        for image, target in zip(images, targets, strict=True):
            assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
            assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
            boxes = target["boxes"]
            assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
            assert boxes.shape[0] >= 1
            assert (boxes[:, 2:] > boxes[:, :2]).all()
            assert (
                float(boxes[:, 2].max()) <= image.shape[2]
                and float(boxes[:, 3].max()) <= image.shape[1]
            )
            assert target["labels"].dtype == torch.int64 and set(target["labels"].tolist()) == {1}
            assert torch.equal(target["weights"], torch.ones(boxes.shape[0]))
            assert all(isinstance(value, torch.Tensor) for value in target.values())
            seen.append(int(target["record_index"]))
    assert seen == list(range(NUM_RECORDS))


def test_first_record_matches_the_source_annotation(raccoon_dir: Path) -> None:
    # raccoon test_labels.csv: the first image's raccoon spans x 142..442, y 24..276 (639x315)
    _, sample = build_dataset(reader_config(raccoon_dir), training=False)[0]
    assert sample.image.shape == (3, 315, 639)
    assert torch.allclose(sample.boxes, torch.tensor([[142.0, 24.0, 442.0, 276.0]]), atol=1e-3)
    assert sample.encoded_image is None  # dropped after decoding: no bytes travel to the loader


def test_training_shuffle_is_deterministic_per_seed_and_covers_each_epoch(
    raccoon_dir: Path,
) -> None:
    # 1 of 4 records (10) keeps the test fast; positions still index the whole file.
    config = reader_config(raccoon_dir, "shuffle: true num_epochs: 2 sample_1_of_n_examples: 4")
    steps = augmentation_steps(FLIP_AND_CROP)

    def run(seed: int):
        dataset = build_dataset(config, training=True, augmentation_steps=steps, seed=seed)
        return batches_as_lists(
            build_data_loader(dataset, batch_size=2, num_workers=0, training=True)
        )

    first, again, other = run(seed=3), run(seed=3), run(seed=4)
    assert first == again
    assert first != other
    order = [index for indices, _ in first for index in indices]
    kept = list(range(0, NUM_RECORDS, 4))
    assert len(order) == 2 * len(kept)
    assert sorted(order[: len(kept)]) == kept  # epoch 1 is a permutation of the kept records
    assert order[: len(kept)] != kept
    assert order[: len(kept)] != order[len(kept) :]  # each epoch has its own order


def test_augmented_boxes_stay_inside_their_images(raccoon_dir: Path) -> None:
    config = reader_config(raccoon_dir, "shuffle: false num_epochs: 1")
    dataset = build_dataset(
        config, training=True, augmentation_steps=augmentation_steps(FLIP_AND_CROP), seed=0
    )
    plain = build_dataset(config, training=False)
    changed = 0
    for position in range(0, NUM_RECORDS, 4):
        record, sample = dataset[position]
        assert record == position
        boxes = sample.boxes
        assert (
            (boxes >= 0).all()
            and (boxes[:, 2] <= sample.width).all()
            and (boxes[:, 3] <= sample.height).all()
        )
        assert sample.image.shape == (3, sample.height, sample.width)
        changed += not torch.equal(boxes, plain[position][1].boxes)
    assert changed >= 3


def test_results_do_not_depend_on_the_number_of_workers(raccoon_dir: Path) -> None:
    config = reader_config(raccoon_dir, "shuffle: true num_epochs: 1 sample_1_of_n_examples: 4")
    steps = augmentation_steps(FLIP_AND_CROP)
    dataset = build_dataset(config, training=True, augmentation_steps=steps, seed=11)
    in_process = batches_as_lists(
        build_data_loader(dataset, batch_size=3, num_workers=0, training=True)
    )
    with_workers = batches_as_lists(
        build_data_loader(dataset, batch_size=3, num_workers=2, training=True)
    )
    assert in_process == with_workers


def test_worker_batches_arrive_packed_and_equal_to_in_process_ones(raccoon_dir: Path) -> None:
    config = reader_config(raccoon_dir, "shuffle: true num_epochs: 1 sample_1_of_n_examples: 8")
    steps = augmentation_steps(FLIP_AND_CROP)
    dataset = build_dataset(config, training=True, augmentation_steps=steps, seed=3)
    in_process = list(build_data_loader(dataset, batch_size=2, num_workers=0, training=True))
    from_worker = list(build_data_loader(dataset, batch_size=2, num_workers=1, training=True))
    assert len(in_process) == len(from_worker) == 2
    for (images, targets), (worker_images, worker_targets) in zip(in_process, from_worker):
        for image, worker_image in zip(images, worker_images):
            assert worker_image.dtype == image.dtype and torch.equal(image, worker_image)
        for target, worker_target in zip(targets, worker_targets):
            assert target.keys() == worker_target.keys()
            for name, value in target.items():
                assert value.dtype == worker_target[name].dtype, name
                assert torch.equal(value, worker_target[name]), name
        # one shared-memory buffer per dtype: the float images and boxes, the int64 labels
        floats = worker_images + [target["boxes"] for target in worker_targets]
        assert len({tensor.untyped_storage().data_ptr() for tensor in floats}) == 1
        assert len({target["labels"].untyped_storage().data_ptr() for target in worker_targets}) == 1
        assert worker_images[0].is_shared()


def test_sample_1_of_n_keeps_every_nth_record(raccoon_dir: Path) -> None:
    dataset = build_dataset(reader_config(raccoon_dir, "sample_1_of_n_examples: 3"), training=False)
    assert len(dataset) == 14
    loader = build_data_loader(dataset, batch_size=14, num_workers=0, training=False)
    ((_, targets),) = list(loader)
    assert [int(t["record_index"]) for t in targets] == list(range(0, NUM_RECORDS, 3))


def test_num_epochs_zero_repeats_forever(raccoon_dir: Path) -> None:
    dataset = build_dataset(
        reader_config(raccoon_dir, "num_epochs: 0 sample_1_of_n_examples: 10"), training=True
    )
    loader = build_data_loader(dataset, batch_size=3, num_workers=0, training=True)
    with pytest.raises(TypeError, match="repeats forever"):
        len(loader)
    batches = list(itertools.islice(loader, 5))  # 15 samples from a 4-record dataset
    indices = [int(t["record_index"]) for _, targets in batches for t in targets]
    assert len(indices) == 15 and set(indices) == {0, 10, 20, 30}


def test_max_number_of_boxes_truncates_with_a_counted_warning(raccoon_dir: Path, caplog) -> None:
    full = build_dataset(reader_config(raccoon_dir), training=False)
    limited = build_dataset(reader_config(raccoon_dir, "max_number_of_boxes: 1"), training=False)
    crowded = [p for p in range(NUM_RECORDS) if full[p][1].num_objects > 1]
    assert crowded, "the raccoon test split has images with several raccoons"
    with caplog.at_level(logging.WARNING, logger="objdet.data.dataset"):
        for position in crowded:
            sample = limited[position][1]
            assert sample.boxes.tolist() == full[position][1].boxes[:1].tolist()
            assert sample.label_texts == full[position][1].label_texts[:1]
    assert limited.truncated_images == len(crowded)
    assert f"({len(crowded)} images truncated so far" in caplog.records[-1].getMessage()
    assert "test.record" in caplog.records[0].getMessage()


def test_distributed_ranks_split_each_epoch_evenly() -> None:
    shares = [
        EpochSampler(10, shuffle=True, num_epochs=1, seed=5, rank=rank, world_size=3)
        for rank in range(3)
    ]
    positions = [list(sampler) for sampler in shares]
    assert [len(p) for p in positions] == [4, 4, 4]
    assert set().union(*positions) == set(range(10))  # 2 positions repeat to pad 10 -> 12


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("load_dense_pose: true", "load_dense_pose: True is not supported yet"),
        ("num_additional_channels: 2", "num_additional_channels"),
        ("input_type: TF_SEQUENCE_EXAMPLE", "TF_SEQUENCE_EXAMPLE is not supported"),
        ("sample_1_of_n_examples: 0", "sample_1_of_n_examples must be >= 1"),
    ],
)
def test_unsupported_or_invalid_fields_fail_loudly(
    raccoon_dir: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_dataset(reader_config(raccoon_dir, extra), training=False)


def test_reader_without_input_paths_is_a_config_error() -> None:
    config = text_format.Parse('label_map_path: ""', input_reader_pb2.InputReader())
    with pytest.raises(ConfigError, match="expected tf_record_input_reader"):
        build_dataset(config, training=False)


def test_missing_input_file_is_a_data_error(raccoon_dir: Path, tmp_path: Path) -> None:
    config = text_format.Parse(
        f'tf_record_input_reader {{ input_path: "{tmp_path / "absent.record"}" }}',
        input_reader_pb2.InputReader(),
    )
    with pytest.raises(DataError, match="absent.record"):
        build_dataset(config, training=False)


def test_input_files_with_zero_records_name_the_field_and_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.record"
    empty.write_bytes(b"")
    config = text_format.Parse(
        f'tf_record_input_reader {{ input_path: "{empty}" input_path: "{empty}" }}',
        input_reader_pb2.InputReader(),
    )
    files = f"{empty} (0 records), {empty} (0 records)"
    with pytest.raises(DataError) as info:
        build_dataset(config, training=True)
    assert str(info.value) == (
        f"train_input_reader.tf_record_input_reader.input_path: the input files hold 0 "
        f"records: {files}"
    )
    with pytest.raises(DataError, match=r"^eval_input_reader\[1\]\.tf_record_input_reader"):
        build_dataset(config, training=False, config_field="eval_input_reader[1]")


def test_a_record_that_does_not_load_is_one_clean_error_from_workers_too(
    raccoon_dir: Path, tmp_path: Path
) -> None:
    """No skip policy: the record is named, and a worker's error arrives without the worker's
    traceback in its message."""
    from objdet.data.tfrecord import TFRecordWriter, read_records
    from objdet.protos import example_pb2

    records = list(read_records(raccoon_dir / "tfrecord" / "test.record"))[:6]
    example = example_pb2.Example.FromString(records[3])
    image = example.features.feature["image/encoded"].bytes_list.value
    image[0] = image[0][: len(image[0]) // 2]  # a truncated JPEG
    records[3] = example.SerializeToString()
    path = tmp_path / "bad.record"
    with TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    config = reader_config(raccoon_dir, "shuffle: false")
    config.tf_record_input_reader.input_path[:] = [str(path)]
    dataset = build_dataset(config, training=False)
    for workers in (0, 1):
        loader = build_data_loader(dataset, batch_size=2, num_workers=workers, training=False)
        with pytest.raises(DataError) as info:
            list(loader)
        message = str(info.value)
        assert message.startswith(f"{path}#3 (offset ")
        assert "image/encoded: JPEG data does not decode (truncated or corrupt" in message
        assert "\n" not in message and "Traceback" not in message


def test_unsupported_augmentation_step_fails_when_building_a_training_dataset(
    raccoon_dir: Path,
) -> None:
    steps = augmentation_steps("data_augmentation_options { autoaugment_image { } }")
    with pytest.raises(ConfigError, match="'autoaugment_image' is not supported"):
        build_dataset(reader_config(raccoon_dir), training=True, augmentation_steps=steps)


def test_sampler_resumes_mid_epoch_exactly() -> None:
    full = list(itertools.islice(iter(EpochSampler(7, shuffle=True, num_epochs=0, seed=3)), 30))
    for start in (0, 5, 7, 16):
        resumed = EpochSampler(7, shuffle=True, num_epochs=0, seed=3, start_position=start)
        assert list(itertools.islice(iter(resumed), 30 - start)) == full[start:]
    finite = EpochSampler(7, shuffle=False, num_epochs=2, start_position=9)
    assert list(finite) == list(range(9, 14)) and len(finite) == 5
    ranks = [EpochSampler(6, shuffle=True, num_epochs=0, seed=1, rank=r, world_size=2) for r in (0, 1)]
    resumed_rank1 = EpochSampler(6, shuffle=True, num_epochs=0, seed=1, rank=1, world_size=2, start_position=4)
    assert list(itertools.islice(iter(resumed_rank1), 5)) == list(itertools.islice(iter(ranks[1]), 4, 9))

"""The tf.Example codec: round trips, OD API decoding rules, and errors that name the record."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from objdet.data.example import ExampleDecoder, decode_example, encode_sample
from objdet.errors import DataError, LabelMapError
from objdet.protos import example_pb2
from objdet.structures.label_map import LabelMap, LabelMapItem
from objdet.structures.sample import Sample

HEIGHT, WIDTH = 24, 32
LABEL_MAP = LabelMap([LabelMapItem(1, "cat", "Cat"), LabelMapItem(2, "dog", "Dog")], "pets.pbtxt")
SOURCE = "pets.record#17 (offset 12345)"


def encoded_image(
    height: int = HEIGHT, width: int = WIDTH, mode: str = "RGB", fmt: str = "PNG"
) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def make_example(**features: list[object]) -> example_pb2.Example:
    """A valid two-object Example; keyword arguments replace or add features (None removes)."""
    values: dict[str, list[object] | None] = {
        "image/encoded": [encoded_image()],
        "image/format": [b"png"],
        "image/height": [HEIGHT],
        "image/width": [WIDTH],
        "image/filename": [b"a.png"],
        "image/object/bbox/ymin": [0.25, 0.0],
        "image/object/bbox/xmin": [0.125, 0.5],
        "image/object/bbox/ymax": [0.75, 1.0],
        "image/object/bbox/xmax": [0.5, 1.0],
        "image/object/class/text": [b"dog", b"cat"],
        "image/object/class/label": [2, 1],
    }
    values.update({key.replace("__", "/"): value for key, value in features.items()})
    example = example_pb2.Example()
    for key, value in values.items():
        if value is None:
            continue
        feature = example.features.feature[key]
        if value and isinstance(value[0], bytes):
            feature.bytes_list.value.extend(value)  # type: ignore[arg-type]
        elif value and isinstance(value[0], float):
            feature.float_list.value.extend(value)  # type: ignore[arg-type]
        else:
            feature.int64_list.value.extend(value)  # type: ignore[arg-type]
    return example


def decode(example: example_pb2.Example, **options: object) -> Sample:
    return decode_example(example.SerializeToString(), source=SOURCE, **options)  # type: ignore[arg-type]


def full_sample() -> Sample:
    masks = torch.zeros((2, HEIGHT, WIDTH), dtype=torch.uint8)
    masks[0, 6:18, 4:16] = 1
    masks[1, :, 16:] = 1
    return Sample(
        height=HEIGHT,
        width=WIDTH,
        boxes=torch.tensor([[4.0, 6.0, 16.0, 18.0], [16.0, 0.0, 32.0, 24.0]]),
        labels=torch.tensor([2, 1]),
        encoded_image=encoded_image(),
        image_format="png",
        filename="a.png",
        source_id="42",
        key="cafe",
        label_texts=["dog", "cat"],
        difficult=torch.tensor([False, True]),
        is_crowd=torch.tensor([False, False]),
        group_of=torch.tensor([True, False]),
        weights=torch.tensor([1.0, 0.5]),
        areas=torch.tensor([144.0, 384.0]),
        masks=masks,
        keypoints=torch.tensor([[[5.0, 7.0], [8.0, 12.0]], [[20.0, 3.0], [30.0, 22.0]]]),
        keypoint_visibilities=torch.tensor([[True, False], [True, True]]),
        image_labels=torch.tensor([1, 2]),
        image_label_confidences=torch.tensor([1.0, 0.0]),
        neg_category_ids=torch.tensor([3]),
        not_exhaustive_category_ids=torch.tensor([4, 5]),
        detection_boxes=torch.tensor([[0.0, 0.0, 8.0, 12.0]]),
        detection_scores=torch.tensor([0.9]),
        detection_labels=torch.tensor([2]),
    )


# -- round trip ---------------------------------------------------------------------------
def test_encode_decode_round_trip_keeps_every_field() -> None:
    sample = full_sample()
    decoded = decode_example(encode_sample(sample), LABEL_MAP)
    assert decoded.image is not None and decoded.image.shape == (3, HEIGHT, WIDTH)
    assert decoded.image.dtype == torch.uint8
    for name in (
        "height",
        "width",
        "encoded_image",
        "image_format",
        "filename",
        "source_id",
        "key",
        "label_texts",
    ):
        assert getattr(decoded, name) == getattr(sample, name), name
    for name in ("boxes", "detection_boxes", "keypoints"):
        torch.testing.assert_close(getattr(decoded, name), getattr(sample, name), atol=1e-4, rtol=0)
    for name in (
        "labels",
        "difficult",
        "is_crowd",
        "group_of",
        "weights",
        "areas",
        "masks",
        "keypoint_visibilities",
        "image_labels",
        "image_label_confidences",
        "neg_category_ids",
        "not_exhaustive_category_ids",
        "detection_scores",
        "detection_labels",
    ):
        assert torch.equal(getattr(decoded, name), getattr(sample, name)), name


def test_encoded_example_uses_the_od_api_keys_and_layout() -> None:
    example = example_pb2.Example.FromString(encode_sample(full_sample()))
    feature = example.features.feature
    assert list(feature["image/object/bbox/xmin"].float_list.value) == [0.125, 0.5]
    assert list(feature["image/object/bbox/ymax"].float_list.value) == [0.75, 1.0]
    assert list(feature["image/object/keypoint/visibility"].int64_list.value) == [2, 0, 2, 2]
    assert feature["image/object/mask"].WhichOneof("kind") == "bytes_list"
    assert feature["image/object/mask"].bytes_list.value[0].startswith(b"\x89PNG")


def test_encode_needs_the_image_bytes() -> None:
    with pytest.raises(DataError, match="a.png: encode_sample needs sample.encoded_image"):
        encode_sample(Sample(height=2, width=2, filename="a.png"))


def test_empty_sample_round_trip() -> None:
    sample = Sample(height=HEIGHT, width=WIDTH, encoded_image=encoded_image())
    decoded = decode_example(encode_sample(sample))
    assert decoded.num_objects == 0 and decoded.boxes.shape == (0, 4)
    assert decoded.key  # the SHA-256 of the image, as the OD API's tools write it


# -- decoding rules -----------------------------------------------------------------------
def test_label_map_text_decides_over_label() -> None:
    example = make_example(image__object__class__label=[1, 1])
    assert decode(example, label_map=LABEL_MAP).labels.tolist() == [2, 1]
    assert decode(example).labels.tolist() == [1, 1]  # no label map: the ids as stored
    by_display = make_example(image__object__class__text=[b"Dog", b"Cat"])
    decoded = decode(by_display, label_map=LABEL_MAP, use_display_name=True)
    assert decoded.labels.tolist() == [2, 1]


def test_label_text_conflicts_are_counted_and_warned_once_per_decade(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The text wins (the OD API's BackupHandler rule), but not silently: one warning naming
    the first record, then one at the 10th and 100th, and a count for summaries."""
    decoder = ExampleDecoder(LABEL_MAP, with_image_labels=True)
    conflicting = make_example(image__object__class__label=[1, 1]).SerializeToString()
    agreeing = make_example().SerializeToString()
    image_level = make_example(
        image__class__text=[b"cat"], image__class__label=[2]
    ).SerializeToString()
    with caplog.at_level("WARNING", logger="objdet.data.example"):
        assert decoder(agreeing, "r#0").labels.tolist() == [2, 1]
        assert decoder(conflicting, "r#1").labels.tolist() == [2, 1]
        for number in range(2, 100):
            decoder(conflicting if number % 2 else image_level, f"r#{number}")
    conflicts = decoder.class_id_conflicts
    assert (conflicts.records, conflicts.objects) == (99, 99)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        (
            "r#1: image/object/class/label 1 disagrees with image/object/class/text 'dog' "
            "(id 2); using the text's id, as the OD API does (1 of 2 entries here; further "
            "records like this are counted)"
        ),
        (
            "class/label disagreed with class/text in 10 records so far (10 objects); the "
            "text's label-map id was used (the OD API's rule)"
        ),
    ]
    assert decode(make_example(image__object__class__label=[1, 1])).labels.tolist() == [1, 1]


def test_text_missing_from_label_map_names_text_and_record() -> None:
    example = make_example(image__object__class__text=[b"dog", b"horse"])
    with pytest.raises(LabelMapError, match=r"pets\.record#17 \(offset 12345\): label 'horse'"):
        decode(example, label_map=LABEL_MAP)


def test_label_id_missing_from_label_map() -> None:
    example = make_example(image__object__class__text=None, image__object__class__label=[2, 7])
    with pytest.raises(LabelMapError, match=r"ids \[7\] are not in the label map pets\.pbtxt"):
        decode(example, label_map=LABEL_MAP)


def test_texts_without_ids_need_a_label_map() -> None:
    example = make_example(image__object__class__label=None)
    with pytest.raises(DataError, match="no label map was given"):
        decode(example)


def test_boxes_become_absolute_xyxy() -> None:
    sample = decode(make_example())
    expected = torch.tensor([[4.0, 6.0, 16.0, 18.0], [16.0, 0.0, 32.0, 24.0]])
    torch.testing.assert_close(sample.boxes, expected)
    assert sample.difficult is None and sample.masks is None and sample.keypoints is None


def test_float_masks_are_detected_by_feature_kind() -> None:
    masks = np.zeros((2, HEIGHT, WIDTH), np.float32)
    masks[0, 1, 2] = 1.0
    masks[1, 3:5, :] = 0.7
    sample = decode(make_example(image__object__mask=masks.ravel().tolist()))
    assert sample.masks is not None and sample.masks.dtype == torch.uint8
    assert torch.equal(sample.masks, torch.from_numpy(masks > 0).to(torch.uint8))


def test_keypoints_per_object_and_default_visibility() -> None:
    xs, ys = [0.5, float("nan"), 0.25, 1.0], [0.5, float("nan"), 0.0, 1.0]
    sample = decode(make_example(image__object__keypoint__x=xs, image__object__keypoint__y=ys))
    assert sample.keypoints is not None and sample.keypoints.shape == (2, 2, 2)
    torch.testing.assert_close(sample.keypoints[1], torch.tensor([[8.0, 0.0], [32.0, 24.0]]))
    assert sample.keypoint_visibilities.tolist() == [[True, False], [True, True]]  # type: ignore[union-attr]


def test_fast_path_skips_the_image_and_unrequested_features() -> None:
    example = make_example(image__detection__score=[0.5])  # malformed detections ...
    decoder = ExampleDecoder(LABEL_MAP, decode_image=False, with_detections=False)
    sample = decoder(example.SerializeToString(), SOURCE)  # ... are never looked at
    assert sample.image is None and sample.encoded_image is not None
    assert sample.labels.tolist() == [2, 1]
    with pytest.raises(DataError, match=r"image/detection/score has 1 values for 0 boxes"):
        decode(example)


def test_size_comes_from_the_image_header_when_missing() -> None:
    example = make_example(image__height=None, image__width=None)
    sample = decode(example, decode_image=False)
    assert (sample.height, sample.width) == (HEIGHT, WIDTH)


def test_grayscale_jpeg_decodes_to_rgb() -> None:
    example = make_example(image__encoded=[encoded_image(mode="L", fmt="JPEG")])
    image = decode(example).image
    assert image is not None and image.shape == (3, HEIGHT, WIDTH)


# -- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("features", "message"),
    [
        (
            {"image__object__bbox__xmin": [0.6, 0.5]},
            r"object 0: expected ymin <= ymax and xmin <= xmax",
        ),
        (
            {"image__object__bbox__ymax": [0.75, 0.99]} | {"image__object__bbox__ymin": [0.8, 0.0]},
            r"object 0: expected ymin <= ymax",
        ),
        ({"image__object__bbox__xmax": [0.5, 32.0]}, r"object 1: expected normalized coordinates"),
        ({"image__object__bbox__ymin": [0.25, -0.01]}, r"object 1: expected normalized"),
        ({"image__object__bbox__ymin": [0.25]}, r"box coordinate lists differ in length"),
        ({"image__object__class__label": [1]}, r"image/object/class/label has 1 values for 2"),
        (
            {"image__object__difficult": [0, 0, 1]},
            r"image/object/difficult has 3 values for 2 boxes",
        ),
        (
            {"image__encoded": [b"not an image"]},
            r"image/encoded: not an image file \(JPEG/PNG expected\)",
        ),
        ({"image__height": [HEIGHT + 1]}, r"is 25x32 but the encoded image is 24x32"),
        ({"image__height": [b"24"]}, r"'image/height' is a bytes_list, expected a int64_list"),
        ({"image__object__mask": [b"x", b"y"]}, r"image/object/mask\[0\]: mask: not an image file"),
        (
            {
                "image__object__keypoint__x": [0.1, 0.2, 0.3],
                "image__object__keypoint__y": [0.1, 0.2, 0.3],
            },
            r"multiple of the 2 objects",
        ),
    ],
)
def test_invalid_examples_name_the_record(features: dict[str, list[object]], message: str) -> None:
    with pytest.raises(DataError, match=message) as error:
        decode(make_example(**features))
    assert str(error.value).startswith(SOURCE)


def test_coordinates_within_tolerance_are_clipped() -> None:
    sample = decode(make_example(image__object__bbox__xmax=[0.5, 1.0005]))
    assert sample.boxes[1, 2].item() == WIDTH


def test_bytes_that_are_not_an_example() -> None:
    with pytest.raises(DataError, match=rf"{SOURCE[:10]}.*not a serialized tf.Example"):
        decode_example(b"\xff\xff\xff", source=SOURCE)

"""COCO reader and writer: boxes, crowd, masks (vs pycocotools), keypoints, round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from format_files import write_image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from objdet.data.formats import CocoReader, convert_to_tfrecord, write_coco
from objdet.data.formats.convert import read_tfrecord_samples
from objdet.errors import DataError, LabelMapError
from objdet.structures.label_map import LabelMap

WIDTH, HEIGHT = 32, 24


def make_coco(root: Path) -> Path:
    """Two images; a polygon object, a crowd RLE object, a keypoint object; category 7."""
    write_image(root / "images" / "a.jpg", WIDTH, HEIGHT)
    write_image(root / "images" / "b.png", WIDTH, HEIGHT, "PNG")
    crowd = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    crowd[10:20, 4:30] = 1
    rle = coco_mask.encode(np.asfortranarray(crowd))
    document = {
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": WIDTH, "height": HEIGHT},
            {"id": 11, "file_name": "b.png", "width": WIDTH, "height": HEIGHT},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 10,
                "category_id": 7,
                "bbox": [2.5, 3.25, 10.0, 8.5],
                "area": 40.0,
                "iscrowd": 0,
                "segmentation": [[2.5, 3.25, 12.5, 3.25, 7.0, 11.75]],
            },
            {
                "id": 2,
                "image_id": 10,
                "category_id": 3,
                "bbox": [4, 10, 26, 10],
                "area": 260.0,
                "iscrowd": 1,
                "segmentation": {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode()},
            },
            {
                "id": 3,
                "image_id": 11,
                "category_id": 7,
                "bbox": [1, 1, 20, 20],
                "area": 100.0,
                "iscrowd": 0,
                "segmentation": {"size": [HEIGHT, WIDTH], "counts": [30, 50, 688]},
                "keypoints": [5, 6, 2, 0, 0, 0, 9.5, 10.5, 1],
                "num_keypoints": 2,
            },
        ],
        "categories": [{"id": 3, "name": "dog"}, {"id": 7, "name": "cat"}],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(document))
    return path


def test_reads_boxes_crowd_areas_and_keypoints(tmp_path: Path) -> None:
    annotations = make_coco(tmp_path)
    reader = CocoReader(annotations, tmp_path / "images")
    assert reader.label_map.categories(use_display_name=False) == [
        {"id": 3, "name": "dog"},
        {"id": 7, "name": "cat"},
    ]
    first, second = reader[0], reader[1]
    assert first.source_id == "10" and first.labels.tolist() == [7, 3]
    assert first.boxes.tolist() == [[2.5, 3.25, 12.5, 11.75], [4.0, 10.0, 30.0, 20.0]]
    assert first.is_crowd.tolist() == [False, True]
    assert first.areas.tolist() == [40.0, 260.0]
    assert first.label_texts == ["cat", "dog"] and first.masks is None
    assert second.image_format == "png"
    keypoints = second.keypoints[0].tolist()
    assert keypoints[0] == [5.0, 6.0] and all(math.isnan(v) for v in keypoints[1])
    assert keypoints[2] == [9.5, 10.5]
    assert second.keypoint_visibilities.tolist() == [[True, False, False]]


def test_masks_equal_pycocotools(tmp_path: Path) -> None:
    annotations = make_coco(tmp_path)
    reference = COCO(str(annotations))
    reader = CocoReader(annotations, tmp_path / "images", include_masks=True)
    for index, image_id in enumerate((10, 11)):
        sample = reader[index]
        expected = [
            reference.annToMask(a) for a in reference.loadAnns(reference.getAnnIds(imgIds=image_id))
        ]
        assert sample.masks is not None and sample.masks.shape == (len(expected), HEIGHT, WIDTH)
        for ours, theirs in zip(sample.masks.numpy(), expected):
            np.testing.assert_array_equal(ours, theirs)
            assert theirs.sum() > 0


def test_label_map_maps_category_names(tmp_path: Path, animals_label_map: LabelMap) -> None:
    annotations = make_coco(tmp_path)
    sample = CocoReader(annotations, tmp_path / "images", animals_label_map)[0]
    assert sample.labels.tolist() == [1, 2]  # cat, dog in the animals label map
    narrow = LabelMap.from_names(["cat"])
    with pytest.raises(LabelMapError, match=r"instances\.json: category: label 'dog'"):
        CocoReader(annotations, tmp_path / "images", narrow)


def test_write_then_read_keeps_everything(tmp_path: Path) -> None:
    annotations = make_coco(tmp_path)
    reader = CocoReader(annotations, tmp_path / "images", include_masks=True)
    convert_to_tfrecord(reader, tmp_path / "coco.record")
    decoded = list(read_tfrecord_samples(tmp_path / "coco.record", reader.label_map))
    write_coco(decoded, tmp_path / "out", reader.label_map)
    back = CocoReader(
        tmp_path / "out" / "annotations.json", tmp_path / "out" / "images", include_masks=True
    )
    for before, after in zip(reader, back):
        assert after.filename == before.filename and after.encoded_image == before.encoded_image
        assert (after.boxes.double() - before.boxes.double()).abs().max() <= 1e-4
        assert after.labels.tolist() == before.labels.tolist()
        assert after.is_crowd.tolist() == before.is_crowd.tolist()
        assert after.areas.tolist() == before.areas.tolist()
        assert (after.masks == before.masks).all()
    kp_before, kp_after = reader[1].keypoints, back[1].keypoints
    assert np.allclose(kp_before.numpy(), kp_after.numpy(), atol=1e-4, equal_nan=True)
    assert back[1].keypoint_visibilities.tolist() == reader[1].keypoint_visibilities.tolist()
    COCO(str(tmp_path / "out" / "annotations.json"))  # pycocotools accepts the file


def test_bad_annotations_name_the_annotation(tmp_path: Path) -> None:
    annotations = make_coco(tmp_path)
    document = json.loads(annotations.read_text())
    document["annotations"][0]["bbox"] = [30, 3, 10, 5]  # x + w = 40 > 32
    annotations.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"instances\.json: annotation id 1: .*outside the 32x24"):
        CocoReader(annotations, tmp_path / "images")[0]
    document["annotations"][0]["image_id"] = 99
    annotations.write_text(json.dumps(document))
    with pytest.raises(DataError, match="annotation id 1 refers to image_id 99"):
        CocoReader(annotations, tmp_path / "images")
    annotations.write_text("{ not json")
    with pytest.raises(DataError, match=r"instances\.json:1:3: not valid JSON"):
        CocoReader(annotations, tmp_path / "images")


def test_duplicate_image_ids_are_an_error(tmp_path: Path) -> None:
    """Grouping annotations by image id would copy image 10's boxes onto b.png as well."""
    annotations = make_coco(tmp_path)
    document = json.loads(annotations.read_text())
    document["images"][1]["id"] = 10
    annotations.write_text(json.dumps(document))
    with pytest.raises(DataError) as info:
        CocoReader(annotations, tmp_path / "images")
    assert str(info.value) == (
        f"{annotations}: duplicate image id 10: images[0] (a.jpg) and images[1] (b.png); "
        "image ids must be unique"
    )


def test_duplicate_annotation_ids_are_an_error(tmp_path: Path) -> None:
    annotations = make_coco(tmp_path)
    document = json.loads(annotations.read_text())
    document["annotations"][2]["id"] = 1
    annotations.write_text(json.dumps(document))
    with pytest.raises(DataError) as info:
        CocoReader(annotations, tmp_path / "images")
    assert str(info.value) == (
        f"{annotations}: duplicate annotation id 1: annotations[0] and annotations[2]; "
        "annotation ids must be unique"
    )


def test_a_json_file_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    annotations = make_coco(tmp_path)
    annotations.write_bytes(b"\xef\xbb\xbf" + annotations.read_bytes())
    assert len(CocoReader(annotations, tmp_path / "images")) == 2

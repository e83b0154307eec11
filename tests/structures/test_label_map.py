from __future__ import annotations

from pathlib import Path

import pytest

from objdet.errors import LabelMapError
from objdet.structures.label_map import LabelMap, LabelMapItem, load_label_map

LABEL_MAPS = sorted((Path(__file__).resolve().parents[2].parent / "shared/data/odapi/label_maps").glob("*.pbtxt"))


def test_shared_label_maps_are_found() -> None:
    assert len(LABEL_MAPS) == 13


@pytest.mark.parametrize("path", LABEL_MAPS, ids=lambda p: p.name)
def test_every_odapi_label_map_loads(path: Path) -> None:
    label_map = load_label_map(path)
    assert len(label_map) > 0
    assert all(item.id >= 0 for item in label_map.items)


def test_coco_label_map_lookups() -> None:
    coco = load_label_map(next(p for p in LABEL_MAPS if p.name == "mscoco_label_map.pbtxt"))
    assert len(coco) == 80 and coco.max_id == 90
    assert coco.id_for("/m/01g317") == 1
    assert coco.id_for("person", use_display_name=True) == 1
    assert coco.item(90).display_name == "toothbrush"
    assert coco.name_to_id(use_display_name=True)["dog"] == 18
    assert coco.categories()[:2] == [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}]
    assert coco.categories(use_display_name=False)[0] == {"id": 1, "name": "/m/01g317"}
    assert coco.category_index()[18] == {"id": 18, "name": "dog"}


def test_keypoints_are_kept() -> None:
    path = next(p for p in LABEL_MAPS if p.name == "face_person_with_keypoints_label_map.pbtxt")
    face = load_label_map(path).item(1)
    assert face.keypoints[:2] == ((0, "left_eye_center"), (1, "right_eye_center"))
    category = load_label_map(path).categories()[0]
    assert category["keypoints"][:2] == [{"id": 0, "name": "left_eye_center"}, {"id": 1, "name": "right_eye_center"}]


def test_ambiguous_display_name_is_reported_only_on_lookup() -> None:
    path = next(p for p in LABEL_MAPS if p.name == "oid_bbox_trainable_label_map.pbtxt")
    oid = load_label_map(path)
    with pytest.raises(LabelMapError, match="'Bench' is ambiguous"):
        oid.id_for("Bench", use_display_name=True)


def test_binary_label_map_loads_equal(tmp_path: Path) -> None:
    text_map = load_label_map(next(p for p in LABEL_MAPS if p.name == "pascal_label_map.pbtxt"))
    binary = tmp_path / "pascal.pb"
    binary.write_bytes(text_map.to_proto().SerializeToString())
    assert load_label_map(binary).items == text_map.items


def test_save_round_trip(tmp_path: Path) -> None:
    label_map = LabelMap([LabelMapItem(1, "a", "Alpha"), LabelMapItem(3, "b")])
    label_map.save(tmp_path / "lm.pbtxt")
    assert load_label_map(tmp_path / "lm.pbtxt").items == label_map.items


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("item { id: 1 name: 'a' } item { id: 1 name: 'b' }", r"duplicate label map ids: \[1\]"),
        ("item { id: 1 name: 'a' } item { id: 2 name: 'a' }", r"duplicate label map names: \['a'\]"),
        ("item { id: -1 name: 'a' }", "must be >= 0"),
        ("item { id: 0 name: 'cat' }", "reserved for 'background'"),
        ("item { idd: 1 }", r"bad\.pbtxt:1:8: label map syntax error: .* no field named \"idd\""),
        ("item { id: 1 name: 'a' }\nitem {\n  id: 2\n", r"bad\.pbtxt:3:7: label map syntax error: Expected \"}\""),
        (
            "item { id: 1 name: 'a' } item { id: 2 display_name: 'Bee' }",
            r"bad\.pbtxt: item 2 \(id 2, display_name 'Bee'\) has no name",
        ),
    ],
)
def test_invalid_label_maps(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.pbtxt"
    path.write_text(text)
    with pytest.raises(LabelMapError, match=message) as info:
        load_label_map(path)
    assert str(path) in str(info.value)


def test_bytes_that_are_neither_text_nor_binary(tmp_path: Path) -> None:
    path = tmp_path / "bad.pbtxt"
    path.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(LabelMapError, match=r"bad\.pbtxt: not a StringIntLabelMap: neither UTF-8"):
        load_label_map(path)


def test_background_id_zero_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bg.pbtxt"
    path.write_text("item { id: 0 name: 'background' } item { id: 1 name: 'cat' }")
    assert load_label_map(path).ids == [0, 1]


def test_missing_file_and_missing_label(tmp_path: Path) -> None:
    with pytest.raises(LabelMapError, match="not found"):
        load_label_map(tmp_path / "nope.pbtxt")
    label_map = LabelMap.from_names(["cat", "dog"])
    with pytest.raises(LabelMapError, match="'horse' is not in the label map"):
        label_map.id_for("horse", context="train.csv:3")
    with pytest.raises(LabelMapError, match="class id 7 is not in the label map"):
        label_map.item(7)

"""``LabelMap``: class names <-> label-map ids, loaded from the OD API's label_map.pbtxt.

Text (``.pbtxt``) and binary StringIntLabelMap files both load; a text syntax error is
reported as ``file:line:col``. Validation follows the OD API (ids >= 0; id 0 only for
'background') and adds what it leaves silent: duplicate ids and duplicate names are errors
that list them, and an item without a ``name`` (the text records' ``class/text`` holds) is
an error naming the file and the item, rather than every record's label failing to match.
Duplicate *display* names occur in real label maps (Open Images has two 'Bench'); they are
an error only when a lookup by display name hits one.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from objdet.errors import LabelMapError


@dataclass(frozen=True)
class LabelMapItem:
    """One class: its id, machine name, human-readable name and keypoints (id -> label)."""

    id: int
    name: str
    display_name: str = ""
    keypoints: tuple[tuple[int, str], ...] = ()
    ancestor_ids: tuple[int, ...] = ()
    descendant_ids: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """The display name where there is one, else the name (the OD API's category name)."""
        return self.display_name or self.name


@dataclass
class LabelMap:
    """An ordered, validated list of ``LabelMapItem`` with lookups both ways."""

    items: list[LabelMapItem]
    source: str = "<label map>"
    _by_id: dict[int, LabelMapItem] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _validate(self.items, self.source)
        self._by_id = {item.id: item for item in self.items}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_names(cls, names: Iterable[str], source: str = "<names>") -> LabelMap:
        """Ids 1..N in the given order."""
        return cls([LabelMapItem(id=i, name=n) for i, n in enumerate(names, start=1)], source)

    @classmethod
    def from_proto(cls, proto: object, source: str = "<label map>") -> LabelMap:
        items = [
            LabelMapItem(
                id=item.id,
                name=item.name,
                display_name=item.display_name,
                keypoints=tuple((kp.id, kp.label) for kp in item.keypoints),
                ancestor_ids=tuple(item.ancestor_ids),
                descendant_ids=tuple(item.descendant_ids),
            )
            for item in proto.item  # type: ignore[attr-defined]
        ]
        return cls(items, source)

    def to_proto(self):  # -> string_int_label_map_pb2.StringIntLabelMap
        from objdet.protos import string_int_label_map_pb2 as pb

        proto = pb.StringIntLabelMap()
        for item in self.items:
            entry = proto.item.add(id=item.id, name=item.name)
            if item.display_name:
                entry.display_name = item.display_name
            for kp_id, kp_label in item.keypoints:
                entry.keypoints.add(id=kp_id, label=kp_label)
            entry.ancestor_ids.extend(item.ancestor_ids)
            entry.descendant_ids.extend(item.descendant_ids)
        return proto

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as text format (label_map.pbtxt), atomically."""
        from objdet.atomic import atomic_write

        with atomic_write(path, "w") as handle:
            handle.write(text_format.MessageToString(self.to_proto()))

    # -- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, class_id: object) -> bool:
        return class_id in self._by_id

    @property
    def ids(self) -> list[int]:
        return [item.id for item in self.items]

    @property
    def max_id(self) -> int:
        """The largest id: the ``num_classes`` a model needs for this label map."""
        return max((item.id for item in self.items), default=0)

    def item(self, class_id: int) -> LabelMapItem:
        try:
            return self._by_id[class_id]
        except KeyError:
            raise LabelMapError(
                f"{self.source}: class id {class_id} is not in the label map "
                f"(ids: {_describe_ids(self.ids)})"
            ) from None

    def name_to_id(self, use_display_name: bool = False) -> dict[str, int]:
        """The OD API's ``get_label_map_dict``: name (or display name) -> id."""
        mapping: dict[str, int] = {}
        for item in self.items:
            key = item.label if use_display_name else item.name
            mapping.setdefault(key, item.id)
        return mapping

    def id_for(self, text: str, use_display_name: bool = False, context: str = "") -> int:
        """The id of a class name (or display name); an error naming it when absent."""
        key_of = (lambda i: i.label) if use_display_name else (lambda i: i.name)
        matches = [item.id for item in self.items if key_of(item) == text]
        where = f"{context}: " if context else ""
        if not matches:
            known = sorted({key_of(item) for item in self.items})
            shown = ", ".join(repr(k) for k in known[:20]) + (" ..." if len(known) > 20 else "")
            raise LabelMapError(
                f"{where}label {text!r} is not in the label map {self.source} (known: {shown})"
            )
        if len(matches) > 1:
            raise LabelMapError(
                f"{where}label {text!r} is ambiguous in {self.source}: ids {matches} share it"
            )
        return matches[0]

    def categories(self, use_display_name: bool = True) -> list[dict[str, object]]:
        """The OD API's categories list: ``[{'id': 1, 'name': 'cat'}, ...]`` sorted by id.

        Items with keypoints also carry ``'keypoints': [{'id': 0, 'name': 'nose'}, ...]``
        (what the COCO keypoint evaluator needs).
        """
        categories: list[dict[str, object]] = []
        for item in sorted(self.items, key=lambda i: i.id):
            category: dict[str, object] = {"id": item.id, "name": item.label if use_display_name else item.name}
            if item.keypoints:
                category["keypoints"] = [{"id": kp_id, "name": label} for kp_id, label in item.keypoints]
            categories.append(category)
        return categories

    def category_index(self, use_display_name: bool = True) -> dict[int, dict[str, object]]:
        """The OD API's category index: id -> category dict."""
        return {int(c["id"]): c for c in self.categories(use_display_name)}  # type: ignore[call-overload]


def load_label_map(path: str | os.PathLike[str]) -> LabelMap:
    """Load and validate a StringIntLabelMap in text or binary format."""
    from objdet.protos import string_int_label_map_pb2 as pb

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabelMapError(f"{path}: label map file not found") from None
    except OSError as error:
        raise LabelMapError(f"{path}: cannot read label map: {error}") from None
    proto = pb.StringIntLabelMap()
    try:
        text_format.Parse(data.decode("utf-8-sig"), proto)
    except (UnicodeDecodeError, text_format.ParseError) as text_error:
        binary = pb.StringIntLabelMap()
        try:
            binary.ParseFromString(data)
        except DecodeError:
            binary.Clear()
        if not binary.item:
            raise _text_error(path, text_error) from None
        proto = binary
    return LabelMap.from_proto(proto, source=str(path))


def _text_error(path: Path, error: Exception) -> LabelMapError:
    """``path:line:col: ...`` for a text-format syntax error (not UTF-8: a byte offset)."""
    if isinstance(error, UnicodeDecodeError):
        return LabelMapError(
            f"{path}: not a StringIntLabelMap: neither UTF-8 text (byte offset {error.start}) "
            "nor a binary label map"
        )
    assert isinstance(error, text_format.ParseError)
    message = str(error)
    line, column = error.GetLine(), error.GetColumn()
    if line is not None:
        message = message.split(" : ", 1)[-1]  # protobuf prefixes "line:col : "
        where = f"{path}:{line}:{column}" if column is not None else f"{path}:{line}"
    else:
        where = str(path)
    return LabelMapError(f"{where}: label map syntax error: {message}")


def _validate(items: list[LabelMapItem], source: str) -> None:
    for number, item in enumerate(items, start=1):
        if not item.name:
            shown = f", display_name {item.display_name!r}" if item.display_name else ""
            raise LabelMapError(
                f"{source}: item {number} (id {item.id}{shown}) has no name; every item needs "
                "the name that records' class/text hold"
            )
        if item.id < 0:
            raise LabelMapError(f"{source}: label map ids must be >= 0, item {item.name!r} has {item.id}")
        if item.id == 0 and "background" not in (item.name, item.display_name):
            raise LabelMapError(
                f"{source}: label map id 0 is reserved for 'background', "
                f"but item {item.label!r} has id 0"
            )
    duplicate_ids = sorted(i for i, n in Counter(item.id for item in items).items() if n > 1)
    if duplicate_ids:
        raise LabelMapError(f"{source}: duplicate label map ids: {duplicate_ids}")
    duplicate_names = sorted(n for n, c in Counter(item.name for item in items).items() if c > 1)
    if duplicate_names:
        raise LabelMapError(f"{source}: duplicate label map names: {duplicate_names}")


def _describe_ids(ids: list[int]) -> str:
    ids = sorted(ids)
    if len(ids) > 10:
        return f"{ids[0]}..{ids[-1]} ({len(ids)} ids)"
    return str(ids)

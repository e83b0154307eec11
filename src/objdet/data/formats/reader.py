"""``AnnotationReader``: the sequence interface every source-format reader has.

A reader indexes its images when constructed (cheap: annotation files only) and reads one
image and its annotations per ``reader[i]``. Being a ``Sequence[Sample]``, a reader can feed
``objdet convert`` or be used directly as a training dataset without converting to
TFRecords first.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar, overload

from objdet.data.formats.annotation import SkipLog
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample


class AnnotationReader(Sequence[Sample]):
    """Base class: ``len(reader)`` images; ``reader[i]`` -> ``Sample`` of image ``i``.

    Subclasses implement ``__len__``, ``_read(index)`` and ``describe(index)`` (the file an
    index refers to). ``skip_log`` collects skipped annotations when the reader was built
    with ``skip_invalid=True``; it is None otherwise (invalid input raises).
    """

    format_name: ClassVar[str] = ""

    def __init__(self, label_map: LabelMap, *, skip_invalid: bool = False) -> None:
        self.label_map = label_map
        self.skip_log: SkipLog | None = SkipLog() if skip_invalid else None
        # Annotations a format's own rules leave out (KITTI's classes_to_use, VOC's
        # ignore_difficult_instances): not errors, but counted for the summary.
        self.filtered = SkipLog()

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _read(self, index: int) -> Sample: ...

    @abstractmethod
    def describe(self, index: int) -> str:
        """The annotation or image file that image ``index`` comes from."""

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | Sequence[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self)
        if not -size <= index < size:
            raise IndexError(
                f"{self.format_name} reader index {index} out of range ({size} images)"
            )
        return self._read(index % size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images)"

"""PASCAL VOC XML annotations: reader and writer.

Reading follows the OD API's ``create_pascal_tf_record.py``: the example list is
``DATA_DIR/YEAR/ImageSets/Main/aeroplane_SET.txt`` (first token per line), annotations are
``DATA_DIR/YEAR/ANNOTATIONS_DIR/ID.xml``, images ``DATA_DIR/<folder>/JPEGImages/<filename>``;
``difficult`` is kept per object, and ``ignore_difficult_instances`` leaves difficult objects
out (counted). Object names are label-map names. For flat layouts (one directory of XML, one
of images, like the raccoon dataset) pass ``images_dir`` instead of ``data_dir``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.etree import ElementTree

from objdet.atomic import atomic_directory
from objdet.data.formats.annotation import AnnotatedObject, build_sample
from objdet.data.formats.image_file import read_image_file
from objdet.data.formats.output_layout import image_file_names, number_text
from objdet.data.formats.reader import AnnotationReader
from objdet.errors import DataError
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

YEARS = ("VOC2007", "VOC2012", "merged")


class VocReader(AnnotationReader):
    """Reads one VOC XML file per image; ``reader[i]`` is ``annotation_files[i]``."""

    format_name = "voc"

    def __init__(
        self,
        annotation_files: Sequence[str | os.PathLike[str]],
        label_map: LabelMap,
        *,
        images_dir: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        ignore_difficult_instances: bool = False,
        skip_invalid: bool = False,
    ) -> None:
        super().__init__(label_map, skip_invalid=skip_invalid)
        if (images_dir is None) == (data_dir is None):
            raise ValueError("pass exactly one of images_dir (flat layout) or data_dir (devkit)")
        self.annotation_files = [Path(p) for p in annotation_files]
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.ignore_difficult_instances = ignore_difficult_instances
        missing = [str(p) for p in self.annotation_files if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} annotation file(s) not found, first: {missing[0]}")

    @classmethod
    def from_devkit(
        cls,
        data_dir: str | os.PathLike[str],
        year: str,
        split: str,
        label_map: LabelMap,
        *,
        annotations_dir: str = "Annotations",
        ignore_difficult_instances: bool = False,
        skip_invalid: bool = False,
    ) -> VocReader:
        """The VOCdevkit layout read by the OD API's create_pascal_tf_record.py."""
        if year not in YEARS:
            raise DataError(f"--year must be one of {YEARS}, found {year!r}")
        data_dir = Path(data_dir)
        files: list[Path] = []
        for one_year in ("VOC2007", "VOC2012") if year == "merged" else (year,):
            for example_id in _read_example_list(data_dir / one_year, split):
                files.append(data_dir / one_year / annotations_dir / f"{example_id}.xml")
        return cls(
            files,
            label_map,
            data_dir=data_dir,
            ignore_difficult_instances=ignore_difficult_instances,
            skip_invalid=skip_invalid,
        )

    @classmethod
    def from_directory(
        cls,
        annotations_dir: str | os.PathLike[str],
        images_dir: str | os.PathLike[str],
        label_map: LabelMap,
        *,
        ignore_difficult_instances: bool = False,
        skip_invalid: bool = False,
    ) -> VocReader:
        """Every ``*.xml`` in ``annotations_dir`` (sorted), images in ``images_dir``."""
        files = sorted(Path(annotations_dir).glob("*.xml"))
        if not files:
            raise DataError(f"{annotations_dir}: no .xml annotation files found")
        return cls(
            files,
            label_map,
            images_dir=images_dir,
            ignore_difficult_instances=ignore_difficult_instances,
            skip_invalid=skip_invalid,
        )

    def __len__(self) -> int:
        return len(self.annotation_files)

    def describe(self, index: int) -> str:
        return str(self.annotation_files[index])

    def _read(self, index: int) -> Sample:
        xml_path = self.annotation_files[index]
        root = _parse_xml(xml_path)
        filename = _text(root, "filename", xml_path)
        if self.images_dir is not None:
            image_path = self.images_dir / filename
        else:
            assert self.data_dir is not None
            image_path = self.data_dir / _text(root, "folder", xml_path) / "JPEGImages" / filename
        image = read_image_file(image_path, str(xml_path))
        _check_declared_size(root, xml_path, image.width, image.height)
        objects = []
        for number, element in enumerate(root.findall("object"), start=1):
            obj = _parse_object(element, f"{xml_path}: object #{number}")
            if obj.difficult and self.ignore_difficult_instances:
                self.filtered.add(obj.location, "difficult (ignore_difficult_instances)")
                continue
            objects.append(obj)
        return build_sample(
            image,
            objects,
            self.label_map,
            filename=filename,
            source_id=filename,
            fields=("difficult",),
            skip_log=self.skip_log,
        )


def _read_example_list(year_dir: Path, split: str) -> list[str]:
    main = year_dir / "ImageSets" / "Main"
    candidates = [main / f"aeroplane_{split}.txt", main / f"{split}.txt"]
    for path in candidates:
        if path.is_file():
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            return [line.split()[0] for line in lines if line.strip()]
    raise DataError(f"example list not found: tried {', '.join(str(p) for p in candidates)}")


def _parse_xml(xml_path: Path) -> ElementTree.Element:
    try:
        return ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        line, column = error.position
        raise DataError(f"{xml_path}:{line}:{column}: not well-formed XML: {error}") from None
    except OSError as error:
        raise DataError(f"{xml_path}: cannot read annotation file: {error}") from None


def _text(element: ElementTree.Element, path: str, where: object) -> str:
    found = element.find(path)
    if found is None or not (found.text or "").strip():
        raise DataError(f"{where}: missing <{path}> element")
    return (found.text or "").strip()


def _float(element: ElementTree.Element, path: str, where: object) -> float:
    text = _text(element, path, where)
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: <{path}> must be a number, found {text!r}") from None


def _check_declared_size(
    root: ElementTree.Element, xml_path: Path, width: int, height: int
) -> None:
    """<size> must match the image; a missing or zero size (some tools write 0) is skipped."""
    if root.find("size/width") is None or root.find("size/height") is None:
        return
    declared = (
        int(_float(root, "size/width", xml_path)),
        int(_float(root, "size/height", xml_path)),
    )
    if declared != (0, 0) and declared != (width, height):
        raise DataError(
            f"{xml_path}: <size> says {declared[0]}x{declared[1]} but the image is {width}x{height}"
        )


def _parse_object(element: ElementTree.Element, where: str) -> AnnotatedObject:
    box = tuple(_float(element, f"bndbox/{key}", where) for key in ("xmin", "ymin", "xmax", "ymax"))
    difficult_text = (element.findtext("difficult") or "0").strip()
    try:
        difficult = bool(int(float(difficult_text)))
    except ValueError:
        raise DataError(f"{where}: <difficult> must be 0 or 1, found {difficult_text!r}") from None
    return AnnotatedObject(
        box=(box[0], box[1], box[2], box[3]),
        label_text=_text(element, "name", where),
        location=where,
        difficult=difficult,
    )


def write_voc(
    samples: Iterable[Sample],
    output_dir: str | os.PathLike[str],
    label_map: LabelMap,
    *,
    split: str = "trainval",
) -> int:
    """Write a VOC year directory: Annotations/, JPEGImages/, ImageSets/Main/SPLIT.txt.

    ``output_dir`` plays the role of ``DATA_DIR/YEAR``: ``<folder>`` is its name, so
    ``VocReader.from_devkit(output_dir.parent, output_dir.name, split, ...)`` reads it back.
    Object names are label-map names; images are written when the Sample has their bytes.
    Returns the number of images written. The directory is replaced atomically.
    """
    output_dir = Path(output_dir)
    stems = []
    with atomic_directory(output_dir) as staging:
        for sample, filename in image_file_names(samples):
            stem = Path(filename).stem
            stems.append(stem)
            xml = _sample_to_xml(sample, filename, output_dir.name, label_map)
            ElementTree.indent(xml)
            (staging / "Annotations").mkdir(exist_ok=True)
            ElementTree.ElementTree(xml).write(staging / "Annotations" / f"{stem}.xml", "utf-8")
            if sample.encoded_image is not None:
                (staging / "JPEGImages").mkdir(exist_ok=True)
                (staging / "JPEGImages" / filename).write_bytes(sample.encoded_image)
        (staging / "ImageSets" / "Main").mkdir(parents=True)
        (staging / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{s}\n" for s in stems)
        )
    return len(stems)


def _sample_to_xml(
    sample: Sample, filename: str, folder: str, label_map: LabelMap
) -> ElementTree.Element:
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = folder
    ElementTree.SubElement(root, "filename").text = filename
    size = ElementTree.SubElement(root, "size")
    for key, value in (("width", sample.width), ("height", sample.height), ("depth", 3)):
        ElementTree.SubElement(size, key).text = str(value)
    ElementTree.SubElement(root, "segmented").text = "0"
    difficult = sample.difficult.tolist() if sample.difficult is not None else None
    for index, (box, label) in enumerate(zip(sample.boxes.tolist(), sample.labels.tolist())):
        obj = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(obj, "name").text = label_map.item(int(label)).name
        ElementTree.SubElement(obj, "pose").text = "Unspecified"
        ElementTree.SubElement(obj, "truncated").text = "0"
        ElementTree.SubElement(obj, "difficult").text = str(
            int(bool(difficult and difficult[index]))
        )
        bndbox = ElementTree.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ElementTree.SubElement(bndbox, key).text = number_text(value)
    return root

"""The OD API's TF2 detection zoo: every model's name, reported COCO figures and tarball URL.

The table is the OD API's ``g3doc/tf2_detection_zoo.md`` (Apache-2.0): the name is the
tarball's stem; speed (ms per image) and COCO mAP are as the OD API reports them (a model
with keypoints or masks reports ``boxes/keypoints`` or ``boxes/masks`` mAP). No hash is
published for these tarballs, so ``sha256`` is None: the first download records it and every
later download is checked against it (:mod:`objdet.zoo.cache`).

``config`` names the OD API's ``configs/tf2`` file shipped in ``objdet/zoo/data/configs`` for
the model (None where the OD API has none); it tells whether objdet builds the model before
anything is downloaded. After a download the tarball's own ``pipeline.config`` is
authoritative.

Downloads come from ``http://download.tensorflow.org/models/object_detection/`` unless
``$OBJDET_ZOO_URL`` names a mirror that replaces this prefix (a test server, or a folder
served inside an air-gapped network: ``$OBJDET_ZOO_URL/tf2/20200711/NAME.tar.gz``).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

from objdet.errors import ObjdetError

DEFAULT_URL_PREFIX = "http://download.tensorflow.org/models/object_detection/"
URL_ENV = "OBJDET_ZOO_URL"


@dataclass(frozen=True)
class ZooModel:
    name: str  # the tarball's stem, e.g. "ssd_mobilenet_v2_320x320_coco17_tpu-8"
    title: str  # as the OD API's zoo table names it
    speed_ms: int  # reported inference time per image
    coco_map: tuple[float, ...]  # as reported: one figure per output kind (or fewer)
    outputs: tuple[str, ...]  # "Boxes", and "Keypoints" or "Masks"
    date: str  # the tarball's folder under tf2/, e.g. "20200711"
    config: str | None  # shipped configs/tf2 file name, None if the OD API has none
    sha256: str | None = None  # pinned hash of the tarball; None: recorded at first download

    def url(self, prefix: str | None = None) -> str:
        """The tarball's URL under ``prefix`` (default: :func:`url_prefix`)."""
        return f"{prefix or url_prefix()}tf2/{self.date}/{self.name}.tar.gz"

    def coco_map_text(self) -> str:
        return "/".join(f"{value:.1f}" for value in self.coco_map)


def url_prefix() -> str:
    """``$OBJDET_ZOO_URL`` (with a trailing ``/``) if set, else the OD API's download prefix."""
    mirror = os.environ.get(URL_ENV, "").strip()
    if not mirror:
        return DEFAULT_URL_PREFIX
    return mirror if mirror.endswith("/") else mirror + "/"


def _row(line: str) -> ZooModel:
    name, title, speed, coco_map, outputs, date, config = (part.strip() for part in line.split("|"))
    return ZooModel(
        name=name, title=title, speed_ms=int(speed),
        coco_map=tuple(float(value) for value in coco_map.split("/")),
        outputs=tuple(outputs.split("/")), date=date, config=config or None,
    )


# name | title | speed ms | COCO mAP | outputs | date folder | shipped config
_TABLE = """
centernet_hg104_512x512_coco17_tpu-8 | CenterNet HourGlass104 512x512 | 70 | 41.9 | Boxes | 20200713 | centernet_hourglass104_512x512_coco17_tpu-8.config
centernet_hg104_512x512_kpts_coco17_tpu-32 | CenterNet HourGlass104 Keypoints 512x512 | 76 | 40.0/61.4 | Boxes/Keypoints | 20200711 | centernet_hourglass104_512x512_kpts_coco17_tpu-32.config
centernet_hg104_1024x1024_coco17_tpu-32 | CenterNet HourGlass104 1024x1024 | 197 | 44.5 | Boxes | 20200713 | centernet_hourglass104_1024x1024_coco17_tpu-32.config
centernet_hg104_1024x1024_kpts_coco17_tpu-32 | CenterNet HourGlass104 Keypoints 1024x1024 | 211 | 42.8/64.5 | Boxes/Keypoints | 20200711 | centernet_hourglass104_1024x1024_kpts_coco17_tpu-32.config
centernet_resnet50_v1_fpn_512x512_coco17_tpu-8 | CenterNet Resnet50 V1 FPN 512x512 | 27 | 31.2 | Boxes | 20200711 |
centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8 | CenterNet Resnet50 V1 FPN Keypoints 512x512 | 30 | 29.3/50.7 | Boxes/Keypoints | 20200711 | centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config
centernet_resnet101_v1_fpn_512x512_coco17_tpu-8 | CenterNet Resnet101 V1 FPN 512x512 | 34 | 34.2 | Boxes | 20200711 | centernet_resnet101_v1_fpn_512x512_coco17_tpu-8.config
centernet_resnet50_v2_512x512_coco17_tpu-8 | CenterNet Resnet50 V2 512x512 | 27 | 29.5 | Boxes | 20200711 |
centernet_resnet50_v2_512x512_kpts_coco17_tpu-8 | CenterNet Resnet50 V2 Keypoints 512x512 | 30 | 27.6/48.2 | Boxes/Keypoints | 20200711 | centernet_resnet50_v2_512x512_kpts_coco17_tpu-8.config
centernet_mobilenetv2fpn_512x512_coco17_od | CenterNet MobileNetV2 FPN 512x512 | 6 | 23.4 | Boxes | 20210210 |
centernet_mobilenetv2fpn_512x512_coco17_kpts | CenterNet MobileNetV2 FPN Keypoints 512x512 | 6 | 41.7 | Boxes/Keypoints | 20210210 |
efficientdet_d0_coco17_tpu-32 | EfficientDet D0 512x512 | 39 | 33.6 | Boxes | 20200711 | ssd_efficientdet_d0_512x512_coco17_tpu-8.config
efficientdet_d1_coco17_tpu-32 | EfficientDet D1 640x640 | 54 | 38.4 | Boxes | 20200711 | ssd_efficientdet_d1_640x640_coco17_tpu-8.config
efficientdet_d2_coco17_tpu-32 | EfficientDet D2 768x768 | 67 | 41.8 | Boxes | 20200711 | ssd_efficientdet_d2_768x768_coco17_tpu-8.config
efficientdet_d3_coco17_tpu-32 | EfficientDet D3 896x896 | 95 | 45.4 | Boxes | 20200711 | ssd_efficientdet_d3_896x896_coco17_tpu-32.config
efficientdet_d4_coco17_tpu-32 | EfficientDet D4 1024x1024 | 133 | 48.5 | Boxes | 20200711 | ssd_efficientdet_d4_1024x1024_coco17_tpu-32.config
efficientdet_d5_coco17_tpu-32 | EfficientDet D5 1280x1280 | 222 | 49.7 | Boxes | 20200711 | ssd_efficientdet_d5_1280x1280_coco17_tpu-32.config
efficientdet_d6_coco17_tpu-32 | EfficientDet D6 1280x1280 | 268 | 50.5 | Boxes | 20200711 | ssd_efficientdet_d6_1408x1408_coco17_tpu-32.config
efficientdet_d7_coco17_tpu-32 | EfficientDet D7 1536x1536 | 325 | 51.2 | Boxes | 20200711 | ssd_efficientdet_d7_1536x1536_coco17_tpu-32.config
ssd_mobilenet_v2_320x320_coco17_tpu-8 | SSD MobileNet v2 320x320 | 19 | 20.2 | Boxes | 20200711 | ssd_mobilenet_v2_320x320_coco17_tpu-8.config
ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8 | SSD MobileNet V1 FPN 640x640 | 48 | 29.1 | Boxes | 20200711 | ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8.config
ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8 | SSD MobileNet V2 FPNLite 320x320 | 22 | 22.2 | Boxes | 20200711 | ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config
ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8 | SSD MobileNet V2 FPNLite 640x640 | 39 | 28.2 | Boxes | 20200711 | ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8.config
ssd_resnet50_v1_fpn_640x640_coco17_tpu-8 | SSD ResNet50 V1 FPN 640x640 (RetinaNet50) | 46 | 34.3 | Boxes | 20200711 | ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config
ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8 | SSD ResNet50 V1 FPN 1024x1024 (RetinaNet50) | 87 | 38.3 | Boxes | 20200711 | ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8.config
ssd_resnet101_v1_fpn_640x640_coco17_tpu-8 | SSD ResNet101 V1 FPN 640x640 (RetinaNet101) | 57 | 35.6 | Boxes | 20200711 | ssd_resnet101_v1_fpn_640x640_coco17_tpu-8.config
ssd_resnet101_v1_fpn_1024x1024_coco17_tpu-8 | SSD ResNet101 V1 FPN 1024x1024 (RetinaNet101) | 104 | 39.5 | Boxes | 20200711 | ssd_resnet101_v1_fpn_1024x1024_coco17_tpu-8.config
ssd_resnet152_v1_fpn_640x640_coco17_tpu-8 | SSD ResNet152 V1 FPN 640x640 (RetinaNet152) | 80 | 35.4 | Boxes | 20200711 | ssd_resnet152_v1_fpn_640x640_coco17_tpu-8.config
ssd_resnet152_v1_fpn_1024x1024_coco17_tpu-8 | SSD ResNet152 V1 FPN 1024x1024 (RetinaNet152) | 111 | 39.6 | Boxes | 20200711 | ssd_resnet152_v1_fpn_1024x1024_coco17_tpu-8.config
faster_rcnn_resnet50_v1_640x640_coco17_tpu-8 | Faster R-CNN ResNet50 V1 640x640 | 53 | 29.3 | Boxes | 20200711 | faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config
faster_rcnn_resnet50_v1_1024x1024_coco17_tpu-8 | Faster R-CNN ResNet50 V1 1024x1024 | 65 | 31.0 | Boxes | 20200711 | faster_rcnn_resnet50_v1_1024x1024_coco17_tpu-8.config
faster_rcnn_resnet50_v1_800x1333_coco17_gpu-8 | Faster R-CNN ResNet50 V1 800x1333 | 65 | 31.6 | Boxes | 20200711 | faster_rcnn_resnet50_v1_800x1333_coco17_gpu-8.config
faster_rcnn_resnet101_v1_640x640_coco17_tpu-8 | Faster R-CNN ResNet101 V1 640x640 | 55 | 31.8 | Boxes | 20200711 | faster_rcnn_resnet101_v1_640x640_coco17_tpu-8.config
faster_rcnn_resnet101_v1_1024x1024_coco17_tpu-8 | Faster R-CNN ResNet101 V1 1024x1024 | 72 | 37.1 | Boxes | 20200711 | faster_rcnn_resnet101_v1_1024x1024_coco17_tpu-8.config
faster_rcnn_resnet101_v1_800x1333_coco17_gpu-8 | Faster R-CNN ResNet101 V1 800x1333 | 77 | 36.6 | Boxes | 20200711 | faster_rcnn_resnet101_v1_800x1333_coco17_gpu-8.config
faster_rcnn_resnet152_v1_640x640_coco17_tpu-8 | Faster R-CNN ResNet152 V1 640x640 | 64 | 32.4 | Boxes | 20200711 | faster_rcnn_resnet152_v1_640x640_coco17_tpu-8.config
faster_rcnn_resnet152_v1_1024x1024_coco17_tpu-8 | Faster R-CNN ResNet152 V1 1024x1024 | 85 | 37.6 | Boxes | 20200711 | faster_rcnn_resnet152_v1_1024x1024_coco17_tpu-8.config
faster_rcnn_resnet152_v1_800x1333_coco17_gpu-8 | Faster R-CNN ResNet152 V1 800x1333 | 101 | 37.4 | Boxes | 20200711 | faster_rcnn_resnet152_v1_800x1333_coco17_gpu-8.config
faster_rcnn_inception_resnet_v2_640x640_coco17_tpu-8 | Faster R-CNN Inception ResNet V2 640x640 | 206 | 37.7 | Boxes | 20200711 |
faster_rcnn_inception_resnet_v2_1024x1024_coco17_tpu-8 | Faster R-CNN Inception ResNet V2 1024x1024 | 236 | 38.7 | Boxes | 20200711 |
mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8 | Mask R-CNN Inception ResNet V2 1024x1024 | 301 | 39.0/34.6 | Boxes/Masks | 20200711 | mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config
"""

CATALOG: dict[str, ZooModel] = {
    model.name: model for model in map(_row, _TABLE.strip().splitlines())
}


def find_model(name: str) -> ZooModel:
    """The zoo entry called ``name``; ``ObjdetError`` naming the closest names otherwise."""
    model = CATALOG.get(name)
    if model is not None:
        return model
    close = difflib.get_close_matches(name, list(CATALOG), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `objdet zoo list`"
    raise ObjdetError(f"{name!r} is not a model of the zoo ({len(CATALOG)} models): {hint}")


def shipped_config(model: ZooModel) -> Traversable | None:
    """The OD API config shipped for ``model`` (package data), None if there is none."""
    if model.config is None:
        return None
    return resources.files("objdet.zoo") / "data" / "configs" / model.config


def shipped_label_map() -> Traversable:
    """The OD API's ``mscoco_label_map.pbtxt`` (90 ids of 1..90), shipped as package data."""
    return resources.files("objdet.zoo") / "data" / "mscoco_label_map.pbtxt"


def shipped_keypoint_label_map() -> Traversable:
    """``mscoco_label_map.pbtxt`` with COCO's 17 person keypoints (ids 0..16, the labels of
    the OD API's CenterNet keypoint configs), shipped as package data."""
    return resources.files("objdet.zoo") / "data" / "mscoco_keypoints_label_map.pbtxt"

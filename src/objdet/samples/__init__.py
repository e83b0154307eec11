"""The sample data that ships inside the package, so ``objdet demo`` runs from any folder
after ``pip install objdet`` (no source tree needed).

- ``raccoon/``: the raccoon dataset (MIT, see ``raccoon/LICENSE``): 200 JPEG images, CSV
  train/test splits, VOC XML annotations, its label map. In the source tree
  ``datasets/raccoon`` links here.
- ``ssdlite_mobilenet_v3_large_raccoon.config``: the main job's pipeline config
  (``configs/`` links here).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from objdet.errors import ObjdetError

MAIN_JOB_CONFIG_NAME = "ssdlite_mobilenet_v3_large_raccoon.config"


def sample_path(name: str) -> Path:
    """The filesystem path of a sample shipped in this package (``raccoon``, a config name)."""
    resource = files(__name__) / name
    if not isinstance(resource, Path):  # e.g. a zipped install: the demo needs real files
        raise ObjdetError(f"objdet's sample {name!r} is not a plain file ({resource}); "
                          "install objdet as files (pip install) to run the demo")
    if not resource.exists():
        raise ObjdetError(f"{resource}: objdet's sample {name!r} is missing from the installed package")
    return resource


def raccoon_dataset_dir() -> Path:
    """The bundled raccoon dataset folder (images/, train_labels.csv, test_labels.csv, ...)."""
    return sample_path("raccoon")


def main_job_config_path() -> Path:
    """The main job's pipeline config (SSDLite MobileNet v3 large, raccoon, from scratch)."""
    return sample_path(MAIN_JOB_CONFIG_NAME)

"""The ``--max_image_pixels`` flag of the commands that read image files (detect, convert)."""

from __future__ import annotations

import argparse


def add_max_image_pixels_flag(parser: argparse.ArgumentParser) -> None:
    """``--max_image_pixels N``: refuse images whose header declares more pixels (0: no limit).

    Without the flag, the limit is ``$OBJDET_MAX_IMAGE_PIXELS`` or 89,478,485 (Pillow's
    decompression bomb guard); see ``objdet.data.image_decode``.
    """
    parser.add_argument(
        "--max_image_pixels",
        type=int,
        default=None,
        metavar="N",
        help="refuse images whose header declares more than N pixels, before decoding "
        "(default: $OBJDET_MAX_IMAGE_PIXELS or 89478485; 0: no limit)",
    )

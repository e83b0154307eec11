"""``objdet serve``: a drop-in for TensorFlow Serving (REST and gRPC) over objdet exports.

objdet serve --model_name detector --model_base_path /models/detector \\
    --rest_api_port 8501 --port 8500
objdet serve --model_config_file models.config --enable_batching \\
    --batching_parameters_file batching.config

base_path holds numeric version directories, each written by ``objdet export``; the flags
are TF Serving's, every one of them (see ``objdet.serving.flags``: implemented, ignored
where TF Serving ignores it on a CPU, or refused with the reason).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subcommands: Any) -> None:
    from objdet.serving.flags import add_flags

    parser = subcommands.add_parser(
        "serve", help="serve exported models with TF Serving's REST and gRPC APIs")
    add_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from objdet.data.image_decode import set_max_image_pixels
    from objdet.serving.flags import options_from_flags, version_text

    if args.version:
        print(version_text())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_max_image_pixels(args.max_image_pixels)
    configs, options = options_from_flags(args)
    from objdet.serving.server import Server

    Server(configs, options).serve()
    return 0

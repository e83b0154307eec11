"""``objdet serve``: a drop-in for TensorFlow Serving (REST and gRPC) over objdet exports.

objdet serve --model_name detector --model_base_path /models/detector \\
    --rest_api_port 8501 --port 8500
objdet serve --model_config_file models.config --enable_batching \\
    --batching_parameters_file batching.config

base_path holds numeric version directories, each written by ``objdet export``; the flags
are TF Serving's (see ``objdet.serving``).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "serve", help="serve exported models with TF Serving's REST and gRPC APIs")
    models = parser.add_argument_group("models (--model_name/--model_base_path or --model_config_file)")
    models.add_argument("--model_name", default=None, help="name of the model in URLs and ModelSpec")
    models.add_argument("--model_base_path", default=None,
                        help="folder of numeric version directories (objdet exports)")
    models.add_argument("--model_config_file", default=None,
                        help="TF Serving ModelServerConfig text file (model_config_list)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: no gRPC); default 8500")
    parser.add_argument("--rest_api_port", type=int, default=8501,
                        help="REST port (0: no REST); default 8501")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on; default 0.0.0.0")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="how often base paths are polled for new versions; default 1")
    parser.add_argument("--enable_batching", action="store_true",
                        help="batch images of concurrent requests into one model call")
    parser.add_argument("--batching_parameters_file", default=None,
                        help="TF Serving BatchingParameters text file (implies --enable_batching)")
    parser.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024,
                        help="largest request body accepted (REST 413 / gRPC RESOURCE_EXHAUSTED); "
                        "default 64 MiB")
    parser.add_argument("--max_image_pixels", type=int, default=None, metavar="N",
                        help="refuse images whose header declares more than N pixels "
                        "(default: $OBJDET_MAX_IMAGE_PIXELS or 89478485; 0: no limit)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from objdet.data.image_decode import set_max_image_pixels
    from objdet.errors import ConfigError
    from objdet.serving import model_config
    from objdet.serving.server import Server, ServerOptions

    set_max_image_pixels(args.max_image_pixels)
    if args.model_config_file:
        if args.model_name or args.model_base_path:
            raise ConfigError("--model_config_file: give it or --model_name/--model_base_path, "
                              "not both")
        configs = model_config.read_model_config_file(args.model_config_file)
    elif args.model_name and args.model_base_path:
        configs = [model_config.single_model_config(args.model_name, args.model_base_path)]
    else:
        raise ConfigError("give --model_name and --model_base_path, or --model_config_file")
    if args.file_system_poll_wait_seconds <= 0:
        raise ConfigError("--file_system_poll_wait_seconds: must be > 0")
    batching = None
    if args.enable_batching or args.batching_parameters_file:
        batching = model_config.read_batching_parameters(args.batching_parameters_file)
    options = ServerOptions(
        port=args.port, rest_api_port=args.rest_api_port, host=args.host,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds, batching=batching,
        max_request_bytes=args.max_request_bytes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Server(configs, options).serve()
    return 0

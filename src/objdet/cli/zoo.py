"""``objdet zoo``: the OD API's TF2 detection zoo.

objdet zoo list [--json]             # every model: name, COCO mAP, speed, outputs, cached?
objdet zoo show NAME                 # its figures, URL, whether objdet builds it, cache, sha256
objdet zoo download NAME [--force] [--sha256 HEX] [--no_convert]

``download`` fetches the tarball (resuming an interrupted download), checks its sha256
(``--sha256`` or the catalog's where pinned; else the one recorded at the first download),
extracts it into ``$OBJDET_HOME/zoo/NAME`` and converts it into the objdet model directory
``NAME/objdet`` (pipeline.config + ckpt-0.pt) that ``objdet eval``/``export``/``detect``
take. A model objdet cannot build yet is downloaded and extracted; its conversion is skipped
with a warning naming why. A cached model is not downloaded again (``--force`` does).

A pipeline.config's ``fine_tune_checkpoint: "zoo:NAME"`` names the cached TF2 checkpoint,
downloaded first when absent. ``$OBJDET_HOME`` (default ``$XDG_CACHE_HOME/objdet`` or
``~/.cache/objdet``) holds the cache; ``$OBJDET_ZOO_URL`` replaces the download prefix
``http://download.tensorflow.org/models/object_detection/`` (a mirror, e.g. in an air-gapped
network: it serves ``tf2/DATE/NAME.tar.gz`` below it).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from objdet.zoo import CacheRecord, ZooCache, ZooModel


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "zoo", help="list, show and download the models of the OD API's TF2 detection zoo",
        description="The OD API's TF2 detection zoo. $OBJDET_HOME holds the cache (default "
        "$XDG_CACHE_HOME/objdet or ~/.cache/objdet); $OBJDET_ZOO_URL replaces the download "
        "prefix http://download.tensorflow.org/models/object_detection/ (a mirror).",
    )
    actions = parser.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every model of the zoo")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead")
    show = actions.add_parser("show", help="one model: figures, URL, build status, cache")
    show.add_argument("name", metavar="NAME")
    download = actions.add_parser("download", help="download (and convert) one model")
    download.add_argument("name", metavar="NAME")
    download.add_argument("--force", action="store_true",
                          help="download again even when the model is cached")
    download.add_argument("--sha256", default=None, metavar="HEX",
                          help="the tarball's expected sha256 (pins it)")
    download.add_argument("--no_convert", action="store_true",
                          help="download and extract only; do not convert for objdet")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.zoo import ZooCache

    cache = ZooCache()
    if args.zoo_command == "list":
        return _list(cache, as_json=args.json)
    if args.zoo_command == "show":
        return _show(args.name, cache)
    return _download(args, cache)


def _list(cache: ZooCache, *, as_json: bool) -> int:
    from objdet.zoo import CATALOG

    records = cache.records()
    cached = {name for name in records if cache.model_dir(name).is_dir()}
    if as_json:
        rows = [{"name": m.name, "title": m.title, "coco_map": list(m.coco_map),
                 "speed_ms": m.speed_ms, "outputs": list(m.outputs), "url": m.url(),
                 "cached": m.name in cached} for m in CATALOG.values()]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(name) for name in CATALOG)
    print(f"{'NAME':<{width}}  {'COCO mAP':>9}  {'SPEED ms':>8}  {'OUTPUTS':<15}  CACHED")
    for model in CATALOG.values():
        print(f"{model.name:<{width}}  {model.coco_map_text():>9}  {model.speed_ms:>8}  "
              f"{'/'.join(model.outputs):<15}  {'yes' if model.name in cached else '-'}")
    print(f"{len(CATALOG)} models; {len(cached)} cached in {cache.root}")
    return 0


def _show(name: str, cache: ZooCache) -> int:
    from objdet.zoo import find_model

    model = find_model(name)
    record = cache.record(model.name)
    fields = [
        ("name", model.name), ("title", model.title),
        ("COCO mAP", f"{model.coco_map_text()} ({'/'.join(model.outputs)})"),
        ("speed", f"{model.speed_ms} ms (as the OD API reports it)"),
        ("outputs", "/".join(model.outputs)), ("url", model.url()),
        ("builds", _build_status(model, cache)), ("cache", _cache_state(model, cache)),
        ("sha256", _sha256_state(model, record)),
    ]
    for label, value in fields:
        print(f"{label + ':':<10} {value}")
    return 0


def _build_status(model: ZooModel, cache: ZooCache) -> str:
    from importlib.resources import as_file

    from objdet.zoo.catalog import shipped_config
    from objdet.zoo.convert import build_problem

    if cache.record(model.name) is not None:
        problem = build_problem(cache.model_dir(model.name) / "pipeline.config")
        origin = "its downloaded pipeline.config"
    else:
        shipped = shipped_config(model)
        if shipped is None:
            return "unknown until downloaded (the OD API ships no config for it)"
        with as_file(shipped) as config_path:
            problem = build_problem(config_path)
        origin = f"the OD API's configs/tf2/{model.config}"
    return f"yes ({origin})" if problem is None else f"no: {problem}"


def _cache_state(model: ZooModel, cache: ZooCache) -> str:
    record = cache.record(model.name)
    if record is None:
        partial = cache.partial_path(model.name)
        if partial.is_file():
            return f"partly downloaded ({partial.stat().st_size} bytes in {partial})"
        return f"not downloaded (would go to {cache.model_dir(model.name)})"
    state = f"downloaded to {cache.model_dir(model.name)}"
    if record.conversion == "converted":
        return f"{state}; converted to {cache.converted_dir(model.name)}"
    if record.conversion:
        return f"{state}; conversion {record.conversion}"
    return f"{state}; not converted"


def _sha256_state(model: ZooModel, record: CacheRecord | None) -> str:
    if record is not None:
        how = "pinned" if record.pinned else "recorded at the first download"
        return f"{record.sha256} ({how})"
    if model.sha256:
        return f"{model.sha256} (pinned)"
    return "not known yet (recorded at the first download)"


def _download(args: argparse.Namespace, cache: ZooCache) -> int:
    from tqdm import tqdm

    from objdet.zoo import download, find_model

    model = find_model(args.name)
    bars: list[tqdm[None]] = []  # opened at the first bytes, so early errors print alone

    def progress(done: int, total: int | None) -> None:
        if not bars:
            bars.append(tqdm(desc=model.name, total=total, initial=done, unit="B",
                             unit_scale=True, file=sys.stderr, disable=None))
        bars[0].update(done - bars[0].n)

    try:
        result = download(model, cache, convert=not args.no_convert, force=args.force,
                          sha256=args.sha256, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    cached = result.cached
    verb = "downloaded" if cached.downloaded else "cached (files verified)"
    print(f"{model.name}: {verb}: {cached.directory} ({cached.record.size} bytes, "
          f"sha256 {cached.record.sha256})")
    print(f"TF2 checkpoint: {cached.checkpoint_prefix}")
    conversion = result.conversion
    if conversion is not None and conversion.directory is not None:
        print(f"objdet model directory: {conversion.directory}")
    elif conversion is not None:
        print(f"objdet zoo download: warning: not converted: objdet cannot build "
              f"{model.name} yet: {conversion.skipped_because}", file=sys.stderr)
    return 0

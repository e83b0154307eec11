"""``objdet records count|verify|dump PATTERN``: inspect TFRecord files of tf.Examples.

PATTERN is anything an ``input_path`` accepts: a file, a glob, ``base@N``, a comma list.

* ``count``: records per file and in total, from the record headers alone: the length CRCs
  are checked, the data CRCs are not (that would read every byte; on a 246 MB file in the
  page cache 0.19 s instead of 0.09 s, from a cold disk or a network mount the time to read
  the whole file). ``count`` says so on stderr; ``verify`` is the data checker.
* ``verify``: reads every record and checks both CRCs; one line per file on stdout
  (``ok``/``FAILED``, records, bytes, path) and a summary line; each problem and warning on
  stderr. Exit status 1 when any file has a problem (with ``--strict`` also when a file has
  0 records).
* ``dump``: one JSON line per record (``json_format.MessageToJson`` of the tf.Example);
  ``--no_image`` replaces ``image/encoded`` by an int64 list holding its byte length.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser("records", help="count, verify or dump TFRecord files")
    actions = parser.add_subparsers(dest="records_command", metavar="ACTION", required=True)
    count = actions.add_parser(
        "count",
        help="number of records per file and in total (record headers only: data CRCs are "
        "not checked; use verify)",
    )
    count.add_argument("pattern", help="file, glob, base@N or a comma-separated list")
    count.set_defaults(run=run_count)
    verify = actions.add_parser("verify", help="read every record and check its CRCs")
    verify.add_argument("pattern", help="file, glob, base@N or a comma-separated list")
    verify.add_argument("--strict", action="store_true", help="also fail when a file has 0 records")
    verify.set_defaults(run=run_verify)
    dump = actions.add_parser("dump", help="print each tf.Example as one line of JSON")
    dump.add_argument("pattern", help="file, glob, base@N or a comma-separated list")
    dump.add_argument("--limit", type=int, default=None, help="print at most N records")
    dump.add_argument(
        "--no_image",
        action="store_true",
        help="replace image/encoded by an int64 list holding its byte length",
    )
    dump.set_defaults(run=run_dump)


def run_count(args: argparse.Namespace) -> int:
    from objdet.data.input_paths import expand_input_paths
    from objdet.data.tfrecord_index import count_records

    total = 0
    for path in expand_input_paths(args.pattern):
        count = count_records(path)
        total += count
        print(f"{count}\t{path}")
    print(f"{total}\ttotal", flush=True)
    print(
        "objdet records count: counted from the record headers (length CRCs checked); data "
        "CRCs were not checked: run `objdet records verify` for that",
        file=sys.stderr,
    )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from objdet.data.tfrecord import verify

    reports = verify(args.pattern)
    failed = False
    for report in reports:
        status = "FAILED" if report.problems else "ok"
        print(f"{status}\t{report.records} records\t{report.size_bytes} bytes\t{report.path}")
        for problem in report.problems:
            print(f"objdet records verify: error: {problem}", file=sys.stderr)
        for warning in report.warnings:
            print(f"objdet records verify: warning: {warning}", file=sys.stderr)
        failed |= bool(report.problems) or (args.strict and bool(report.warnings))
    total = sum(report.records for report in reports)
    problems = sum(len(report.problems) for report in reports)
    print(f"{total} good records in {len(reports)} files, {problems} problems")
    return 1 if failed else 0


def run_dump(args: argparse.Namespace) -> int:
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    from objdet.data.tfrecord import read_records_with_source
    from objdet.errors import DataError
    from objdet.protos import example_pb2

    if args.limit is not None and args.limit < 0:
        raise DataError(f"--limit must be >= 0, got {args.limit}")
    for number, (source, data) in enumerate(read_records_with_source(args.pattern)):
        if args.limit is not None and number >= args.limit:
            break
        example = example_pb2.Example()
        try:
            example.ParseFromString(data)
        except DecodeError as error:
            raise DataError(f"{source}: not a serialized tf.Example ({error})") from None
        if args.no_image and "image/encoded" in example.features.feature:
            image = example.features.feature["image/encoded"]
            size = sum(len(value) for value in image.bytes_list.value)
            image.Clear()
            image.int64_list.value.append(size)
        try:
            sys.stdout.write(json_format.MessageToJson(example, indent=None, sort_keys=True) + "\n")
        except BrokenPipeError:  # `objdet records dump ... | head`: the reader left, fine
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more may reach the pipe
            return 0
    return 0

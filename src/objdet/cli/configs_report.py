"""``objdet configs-report``: which configs under some folders parse, build and train a step.

objdet configs-report configs/ more_configs/            # one line per config, then totals
objdet configs-report configs/ --json                   # [{"config", "parse", "build", ...}]
objdet configs-report configs/ --json_output report.json  # the lines, and the JSON to a file

Every ``*.config`` under the folders (recursively) is reported, in sorted order; see
``objdet.models.coverage`` for what each stage checks. Only ``model`` and ``train_config``
are used. The exit status is 0 however many configs fail (it is a report); 2 when a folder
does not exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from objdet.models.coverage import ConfigReport

PASS, FAIL = "✓", "✗"


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "configs-report", help="report which configs parse, build and train one step"
    )
    parser.add_argument("folders", nargs="+", metavar="DIR",
                        help="folders searched recursively for *.config files (a file is taken as it is)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {config, parse, build, train_step, error, seconds}")
    parser.add_argument("--json_output", default=None, metavar="PATH",
                        help="also write the JSON list to PATH (with the line-per-config output)")
    parser.add_argument("--max_seconds", type=float, default=120.0,
                        help="time limit of each config's train step, in seconds (0: none); "
                        "default 120")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.models.coverage import config_report, find_configs, report_one

    paths = find_configs(args.folders)  # ObjdetError (exit status 2) for a missing folder
    if args.json:
        reports = config_report(paths, max_seconds=args.max_seconds)
        print(_json_text(reports), end="")
    else:
        reports = []
        for path in paths:  # one line as each config finishes
            report = report_one(path, max_seconds=args.max_seconds)
            reports.append(report)
            print(report_line(report), flush=True)
        print(f"{len(reports)} configs: {sum(r.parse for r in reports)} parse, "
              f"{sum(r.build for r in reports)} build, {sum(r.train_step for r in reports)} train step")
    if not paths:
        print(f"no *.config files under {', '.join(args.folders)}", file=sys.stderr)
    if args.json_output:
        from objdet.atomic import atomic_write

        with atomic_write(args.json_output, "w") as handle:
            handle.write(_json_text(reports))
    return 0


def _json_text(reports: Sequence[ConfigReport]) -> str:
    return json.dumps([report.to_json() for report in reports], indent=2) + "\n"


def report_line(report: ConfigReport) -> str:
    """``path: parse ✓ build ✗ train step ✗ (0.1 s) error: ...``."""
    stages = (("parse", report.parse), ("build", report.build), ("train step", report.train_step))
    marks = " ".join(f"{name} {PASS if passed else FAIL}" for name, passed in stages)
    line = f"{report.config}: {marks} ({report.seconds:.1f} s)"
    return f"{line} error: {report.error}" if report.error else line

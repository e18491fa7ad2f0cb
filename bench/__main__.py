"""``python -m bench``: run the benchmarks, print one table (``make bench``).

By default it runs ``summary``: issue 16's figures in one table and ``bench/bench.png``
(~4-5 minutes on two cores). ``--only all`` runs every section (much longer), ``--only cel,e2e``
some. ``--quick`` is a ~1-2 minute smoke run: shorter loads, fewer configurations, one start
each. Logs of every started process go to ``--out``.
``--cel-spec`` (or ``$CEL_SPEC_DIR``) names a local cel-spec checkout whose conformance data the
``cel-engines`` section runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench import (
    BENCH,
    breakdown,
    cel_cost,
    cel_engines,
    coldstart,
    e2e,
    storm_cost,
    summary,
    throughput,
)
from bench.loadgen import CLIENTS
from bench.table import Row, format_table
from tekton_notifications import cel

SECTIONS = (
    "summary",
    "cel",
    "cel-engines",
    "storm",
    "breakdown",
    "throughput",
    "servers",
    "e2e",
    "coldstart",
)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--only", default="summary", help=f"all, or comma-separated of {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=BENCH / "bench.png",
        help="where the summary draws its PNG (default: bench/bench.png)",
    )
    parser.add_argument(
        "--client", choices=CLIENTS, default="auto", help="load generator (auto: wrk if found)"
    )
    parser.add_argument("--connections", type=int, default=16, help="for throughput runs")
    parser.add_argument("--out", type=Path, help="keep process logs here (default: temporary)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument(
        "--cel-spec", help=f"a cel-spec checkout for cel-engines (${cel_engines.SPEC_VARIABLE})"
    )
    args = parser.parse_args(argv)
    only = ",".join(SECTIONS) if args.only == "all" else args.only
    sections = [s.strip() for s in only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    log_dir = args.out or Path(tempfile.mkdtemp(prefix="bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    client = "wrk" if args.client == "auto" and shutil.which("wrk") else args.client
    client = "python" if client == "auto" else client
    settings = throughput.Settings(
        slice_seconds=1 if args.quick else 3,
        baseline_seconds=1 if args.quick else 2,
        slices=1 if args.quick else 2,
        warmup=1.0,
        connections=args.connections,
        client=client,
        log_dir=log_dir,
        quick=args.quick,
    )
    runs: dict[str, Callable[[], tuple[list[Row], list[str]]]] = {
        "summary": lambda: summary.run(settings, png=args.plot),
        "cel": lambda: _joined(
            cel_cost.cel_rows(quick=args.quick), cel_cost.index_rows(quick=args.quick)
        ),
        "cel-engines": lambda: cel_engines.run(quick=args.quick, spec=args.cel_spec),
        "storm": lambda: storm_cost.storm_rows(quick=args.quick),
        "breakdown": lambda: breakdown.run(quick=args.quick, log_dir=log_dir),
        "throughput": lambda: throughput.run(settings),
        "servers": lambda: throughput.run_servers(settings),
        "e2e": lambda: e2e.run(quick=args.quick, log_dir=log_dir),
        "coldstart": lambda: coldstart.run(quick=args.quick, log_dir=log_dir),
    }
    started = time.monotonic()
    now = datetime.datetime.now(datetime.UTC)
    header = [
        f"tekton-notifications benchmarks, {now:%Y-%m-%d %H:%M} UTC",
        f"machine: {machine()}",
        f"load generator: {client} ({settings.connections} connections, the summary "
        f"{summary.CONNECTIONS}; per configuration "
        f"{settings.warmup:g} s warm-up, then {settings.slices} x ({settings.baseline_seconds} s "
        f"no-op + {settings.slice_seconds} s function)); "
        f"CEL engines: {', '.join(cel.available_engines())} (default {cel.selected_engine()})",
        f"command: python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
    ]
    print("\n".join(header), flush=True)
    rows: list[Row] = []
    notes: list[str] = []
    for section in sections:
        section_started = time.monotonic()
        print(f"... {section}", file=sys.stderr, flush=True)
        section_rows, section_notes = runs[section]()
        rows += section_rows
        notes += section_notes
        print(f"... {section}: {time.monotonic() - section_started:.0f} s", file=sys.stderr)
    print()
    print(format_table(rows, markdown=args.markdown))
    print()
    for note in notes:
        print(f"- {note}")
    print(f"- total {time.monotonic() - started:.0f} s; process logs in {log_dir}")
    if args.json:
        args.json.write_text(
            json.dumps({"header": header, "rows": [asdict(r) for r in rows], "notes": notes})
        )
    return 0


def _joined(*parts: tuple[list[Row], list[str]]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    for part_rows, part_notes in parts:
        rows += part_rows
        notes += part_notes
    return rows, notes


if __name__ == "__main__":
    raise SystemExit(main())

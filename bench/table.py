"""One result row per figure, and the table ``python -m bench`` prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

COLUMNS = ("measurement", "value", "unit", "ratio to baseline", "target", "met?")


@dataclass(frozen=True)
class Row:
    """A figure, what it is compared with (``ratio`` x ``baseline``) and its target, if any."""

    measurement: str
    value: float
    unit: str
    ratio: float | None = None
    baseline: str = ""
    target: str = ""
    #: True/False when there is a target, None when the figure is informational.
    met: bool | None = None

    def cells(self) -> tuple[str, ...]:
        ratio = "" if self.ratio is None else f"{format_number(self.ratio)}x {self.baseline}"
        met = {None: "", True: "yes", False: "NO"}[self.met]
        return (
            self.measurement,
            format_number(self.value),
            self.unit,
            ratio.strip(),
            self.target,
            met,
        )


def format_number(value: float) -> str:
    """Three significant digits, thousands separated: 0.0123, 1.23, 123, 12,300."""
    if math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_table(rows: Sequence[Row], *, markdown: bool = False) -> str:
    """A fixed-width text table, or a Markdown one (for bench/README.md)."""
    cells = [COLUMNS, *(row.cells() for row in rows)]
    if markdown:
        lines = [f"| {' | '.join(cells[0])} |", f"|{'---|' * len(COLUMNS)}"]
        lines += [f"| {' | '.join(line)} |" for line in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    numeric = {1, 3}

    def render(line: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if i in numeric and line is not cells[0] else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(cells[0]), rule, *(render(line) for line in cells[1:])])


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else math.nan

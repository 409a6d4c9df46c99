"""How a run looks: a live progress display on stderr, and the results table at the end."""

from __future__ import annotations

import sys
from types import TracebackType

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from conveyor.bench._results import Metric, Report, SideBySide

REPORT_WIDTH = 110
"""Columns of the table when stdout is not a terminal."""
SIDE_BY_SIDE_WIDTH = 150
"""Columns of the side-by-side tables when stdout is not a terminal (their names are long)."""


class Phase:
    """One line of the progress display: a step of a scenario."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: float = 1) -> None:
        """Moves the bar on by ``amount``."""
        self._progress.advance(self._task, amount)

    def update(self, completed: float, description: str | None = None) -> None:
        """Sets how far the step is."""
        if description is None:
            self._progress.update(self._task, completed=completed)
        else:
            self._progress.update(self._task, completed=completed, description=description)

    def done(self) -> None:
        """Marks the step finished."""
        task = next(t for t in self._progress.tasks if t.id == self._task)
        self._progress.update(self._task, completed=task.total or 1, total=task.total or 1)
        self._progress.stop_task(self._task)


class Display:
    """Progress of the run on stderr; silent when disabled or stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.console = Console(file=sys.stderr, highlight=False)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not (enabled and self.console.is_terminal),
        )

    def __enter__(self) -> Display:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def phase(self, description: str, total: float | None = None) -> Phase:
        """A new line of progress; ``total`` None shows a spinner only."""
        return Phase(self._progress, self._progress.add_task(escape(description), total=total))

    def note(self, text: str) -> None:
        """A line above the progress display (shown only when the display is)."""
        if not self._progress.disable:
            self._progress.console.print(escape(text))


def format_value(metric: Metric) -> str:
    """The value with its unit, as people read it."""
    return _format(metric.value, metric.unit)


def _format(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.2f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit in ("tasks/s", "msgs/s"):
        return f"{value:,.0f} {unit}"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit in ("%", "x"):
        return f"{value:,.1f}{unit}" if unit == "%" else f"{value:.2f}x"
    return f"{value:,.0f}{' ' + unit if unit else ''}"


def format_target(metric: Metric) -> str:
    """The target as "<= 3 ms", or "" without one."""
    if metric.target is None:
        return ""
    value = metric.target.value
    shown = f"{value:,.0f}" if value == int(value) else f"{value:g}"
    unit = f" {metric.unit}" if metric.unit and metric.unit not in ("%",) else metric.unit
    return f"{metric.target.op} {shown}{unit}"


def results_table(report: Report) -> Table:
    """One row per measured figure, with the target of issue 5 where it sets one."""
    table = Table(
        title=f"conveyor bench {report.run_id} against {report.addr}",
        box=box.SIMPLE_HEAVY,
        title_justify="left",
    )
    table.add_column("scenario", style="bold", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("target", justify="right", no_wrap=True)
    table.add_column("", justify="center")
    for scenario in report.scenarios:
        first = True
        if scenario.submitted:
            style = "green" if scenario.counts_exact else "bold red"
            table.add_row(
                scenario.name,
                "tasks completed",
                f"[{style}]{scenario.completed:,} / {scenario.submitted:,}[/]",
                "all",
                "[green]✓[/]" if scenario.counts_exact else "[red]✗[/]",
            )
            first = False
        for metric in scenario.metrics:
            met = metric.met
            mark = "" if met is None else ("[green]✓[/]" if met else "[red]✗[/]")
            table.add_row(
                scenario.name if first else "",
                escape(metric.name),
                format_value(metric),
                format_target(metric),
                mark,
            )
            first = False
        table.add_section()
    return table


def _cell(value: float | None, unit: str) -> str:
    return "-" if value is None else _format(value, unit)


def systems_table(side: SideBySide) -> Table:
    """Every system measured in the run: peers, the bare gRPC floor, Conveyor's rows."""
    table = Table(
        title=f"side by side, one run on this machine (peers: {side.peers.directory})",
        box=box.SIMPLE_HEAVY,
        title_justify="left",
    )
    for name in ("system", "e2e tasks/s", "submit p50", "submit p99", "CPU/task"):
        table.add_column(name, justify="left" if name == "system" else "right", no_wrap=True)
    for system in side.systems:
        table.add_row(
            escape(system.name),
            _cell(system.e2e, ""),
            _cell(system.submit_p50, "ms"),
            _cell(system.submit_p99, "ms"),
            _cell(system.cpu_ms_per_task, "ms"),
        )
    return table


def ratios_table(side: SideBySide) -> Table:
    """Each target of issue 20: Conveyor's figure, what it is compared with, the ratio."""
    table = Table(
        title=f"issue 20 targets: {side.met} of {len(side.comparisons)} met",
        box=box.SIMPLE_HEAVY,
        title_justify="left",
    )
    table.add_column("target", no_wrap=True)
    table.add_column("Conveyor", justify="right", no_wrap=True)
    table.add_column("compared with")
    for name in ("its figure", "ratio", "goal"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("", justify="center")
    for c in side.comparisons:
        value = c.value
        mark = "" if c.met is None else ("[green]✓[/]" if c.met else "[red]✗[/]")
        goal = c.target.value
        table.add_row(
            escape(c.goal),
            _cell(c.measured, c.unit),
            escape(c.reference) if c.relative else "",
            _cell(c.reference_value, c.unit) if c.relative else "",
            "-" if value is None else (f"{value:.2f}x" if c.relative else ""),
            f"{c.target.op} {goal:g}x"
            if c.relative
            else f"{c.target.op} {goal:g} {c.unit}".strip(),
            mark,
        )
    return table


def print_report(console: Console, report: Report) -> None:
    """The results table, then each scenario's notes (and the side-by-side tables)."""
    if not console.is_terminal:
        # Redirected, rich would assume 80 columns and cut every row.
        console = Console(file=console.file, width=REPORT_WIDTH, highlight=False)
    console.print(results_table(report))
    for scenario in report.scenarios:
        for note in scenario.notes:
            console.print(f"[dim]{escape(scenario.name)}:[/] {escape(note)}")
    side = report.side_by_side
    if side is not None:
        if not console.is_terminal:
            console = Console(file=console.file, width=SIDE_BY_SIDE_WIDTH, highlight=False)
        console.print(systems_table(side))
        console.print(ratios_table(side))
        for note in side.peers.notes:
            console.print(f"[dim]peers:[/] {escape(note)}")
        if side.peers.missing:
            missing = ", ".join(side.peers.missing)
            console.print(f"[dim]peers:[/] no figures from {missing}; see {side.peers.log_dir}")
    if not report.counts_exact:
        console.print("[bold red]some submitted tasks did not complete: see the table[/]")

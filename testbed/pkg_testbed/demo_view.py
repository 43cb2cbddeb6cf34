"""How the demo reads in a terminal: answers, the rollout table, the summary.

Pure text functions (no I/O) that turn what the demo observed into short
lines; :class:`LiveView`, the one writer that redraws a block in place with
ANSI escapes when the output is a terminal and otherwise appends one plain
line per change (CI logs and tests are not terminals); and :class:`Narrator`,
the demo's output (headers, commands as typed, results) around it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = [
    "DeviceGroup",
    "LiveView",
    "Narrator",
    "RolloutView",
    "Style",
    "answer_groups",
    "bar",
    "device_strip",
    "fleet_block",
    "fleet_line",
    "rollout_block",
    "rollout_line",
    "step_text",
    "summarize_answer",
    "timings_table",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NO_VERSION = "-"
_UNKNOWN_VERSION = "?"


@dataclass(frozen=True)
class Style:
    """ANSI colours, or none (a pipe, a log file, ``NO_COLOR``, ``TERM=dumb``)."""

    color: bool = False

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)


def summarize_answer(answer: Mapping[str, Any]) -> str:
    """An evaluation in one line: the subtasks in order, then the DAG's edges.

    ``{"subtasks": [a, b], "dag": [a->b gate, a->b sequential]}`` reads
    ``a, b  [a->b gate+sequential]``; no subtasks reads ``(no subtasks)``.
    """
    names = [str(item.get("name")) for item in answer.get("subtasks") or []]
    if not names:
        return "(no subtasks)"
    kinds: dict[tuple[str, str], list[str]] = {}
    for edge in answer.get("dag") or []:
        kinds.setdefault((str(edge.get("from")), str(edge.get("to"))), []).append(
            str(edge.get("type"))
        )
    text = ", ".join(names)
    if kinds:
        edges = " ".join(f"{a}->{b} {'+'.join(types)}" for (a, b), types in kinds.items())
        text += f"  [{edges}]"
    return text


def answer_groups(
    answers: Iterable[tuple[str | None, str]], labels: Mapping[str, str]
) -> list[tuple[str, int, str]]:
    """(version label, device count, answer) for each distinct (version, answer), in order seen.

    ``answers`` holds one ``(version, summary)`` per device that answered.
    """
    counts: dict[tuple[str, str], int] = {}
    for version, summary in answers:
        key = (_label(version, labels), summary)
        counts[key] = counts.get(key, 0) + 1
    return [(label, count, summary) for (label, summary), count in counts.items()]


def _label(version: str | None, labels: Mapping[str, str]) -> str:
    if version is None:
        return _NO_VERSION
    return labels.get(version, _UNKNOWN_VERSION)


def device_strip(versions: Sequence[str | None], labels: Mapping[str, str]) -> str:
    """One character per device, in device order: its version's label, ``-`` for none."""
    return "".join(_label(version, labels)[:1] for version in versions)


def bar(percent: float, width: int = 20) -> str:
    """``[#####.....]`` for a percentage in [0, 100] (clamped)."""
    filled = round(max(0.0, min(100.0, percent)) / 100.0 * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def step_text(steps: Sequence[Mapping[str, Any]], index: int) -> str:
    """A step of ``spec.strategy.canary.steps`` as people say it: ``setWeight 50``, ..."""
    if index >= len(steps):
        return "finishing"
    step = steps[index]
    if "setWeight" in step:
        return f"setWeight {step['setWeight']:g}"
    if "pause" in step:
        seconds = (step.get("pause") or {}).get("durationSeconds")
        return f"pause {seconds}s" if seconds is not None else "pause (gate)"
    if "shadow" in step:
        rate = (step.get("shadow") or {}).get("sampleRate", 0.1)
        return f"shadow {float(rate):.0%}"
    if "analysis" in step:
        return "analysis"
    return "step"


@dataclass(frozen=True)
class DeviceGroup:
    """Devices of one target and region, in a stable order, with the version each reports."""

    name: str
    versions: tuple[str | None, ...]


@dataclass(frozen=True)
class RolloutView:
    """What the live table shows of one PolicyDeployment at one moment."""

    name: str
    status: Mapping[str, Any]
    steps: Sequence[Mapping[str, Any]]
    groups: Sequence[DeviceGroup]
    labels: Mapping[str, str]
    elapsed: float = 0.0

    @property
    def summary(self) -> str:
        return str(self.status.get("summary") or "Pending")

    @property
    def step(self) -> str:
        index = self.status.get("currentStepIndex")
        progress = self.status.get("stepProgress") or f"0/{len(self.steps)}"
        if self.summary == "Succeeded":
            return f"step {progress} done, canary now stable"
        if not isinstance(index, int) or not self.status.get("stepStartedAt"):
            return f"step {progress}"
        return f"step {progress} {step_text(self.steps, index)}"

    @property
    def weight(self) -> float:
        value = self.status.get("weight")
        return float(value) if isinstance(value, int | float) else 0.0

    def coverage_text(self) -> str:
        """Live devices on their intended version, and on the canary against the expected."""
        cov = self.status.get("coverage") or {}
        return (
            f"coverage {cov.get('onIntended', 0)}/{cov.get('targeted', 0)}  "
            f"on canary {cov.get('onCanary', 0)} (expect {cov.get('expectedCanary', 0)})"
        )

    def in_shadow(self) -> bool:
        index = self.status.get("currentStepIndex")
        return (
            self.summary not in ("Succeeded",)
            and isinstance(index, int)
            and index < len(self.steps)
            and "shadow" in self.steps[index]
        )

    def diff_text(self) -> str:
        """During a shadow step: sampled decisions, those the candidate decided otherwise,
        and their ratio (the DIFF column); empty otherwise."""
        if not self.in_shadow():
            return ""
        health = self.status.get("health") or {}
        samples = int(health.get("shadowSamples") or 0)
        diffs = int(health.get("shadowDiffs") or 0)
        rate = f"{diffs / samples:.1%}" if samples else "-"
        return f"diff {rate} ({diffs}/{samples} samples)"

    def versions_text(self) -> str:
        stable = (self.status.get("stable") or {}).get("version") or "-"
        canary = (self.status.get("canary") or {}).get("version") or "-"
        return f"stable {stable}, canary {canary}"


def _summary_color(summary: str, style: Style) -> str:
    if summary in ("Succeeded",):
        return style.green(summary)
    if summary in ("Paused", "Waiting"):
        return style.yellow(summary)
    if summary in ("RolledBack", "Failed", "Aborted", "Invalid"):
        return style.red(summary)
    return style.cyan(summary)


def fleet_block(
    groups: Sequence[DeviceGroup], labels: Mapping[str, str], style: Style, legend: str = ""
) -> list[str]:
    """One line per device group: each device's version label, newest highlighted."""
    width = max((len(group.name) for group in groups), default=0)
    newest = list(labels.values())[-1] if labels else None
    lines = []
    for group in groups:
        cells = []
        for version in group.versions:
            label = _label(version, labels)
            cells.append(style.green(label) if label == newest else label)
        lines.append(f"    {group.name:<{width}}  {' '.join(cells)}")
    if legend:
        lines.append(f"    {style.dim(legend)}")
    return lines


def fleet_line(groups: Sequence[DeviceGroup], labels: Mapping[str, str], elapsed: float) -> str:
    """The device groups in one plain line: ``router/eu-west 12112111  ...``."""
    devices = " | ".join(f"{group.name} {device_strip(group.versions, labels)}" for group in groups)
    return f"  [+{elapsed:5.1f}s] {devices}"


def rollout_block(view: RolloutView, style: Style, legend: str = "") -> list[str]:
    """The rollout as a few lines for a terminal, redrawn in place."""
    elapsed = style.dim(f"+{view.elapsed:.1f}s")
    diff = view.diff_text()
    return [
        f"  {style.bold(view.name)}  {_summary_color(view.summary, style)}  {view.step}"
        f"  weight {view.weight:5.1f}% {bar(view.weight, 10)}  {elapsed}",
        f"  {view.coverage_text()}   {view.versions_text()}"
        + (f"   {style.yellow(diff)}" if diff else ""),
        *fleet_block(view.groups, view.labels, style, legend),
    ]


def rollout_line(view: RolloutView) -> str:
    """The rollout in one plain line: appended each time it changes (not a terminal)."""
    devices = " | ".join(
        f"{group.name} {device_strip(group.versions, view.labels)}" for group in view.groups
    )
    diff = view.diff_text()
    return (
        f"  [+{view.elapsed:5.1f}s] {view.summary:<11} {view.step:<24} "
        f"weight {view.weight:3.0f}%  {view.coverage_text()}  | {devices}"
        + (f"  | {diff}" if diff else "")
    )


def timings_table(timings: Sequence[tuple[str, str, float]], total: float) -> list[str]:
    """The summary: one line per phase (name, what it did, seconds) and the total."""
    width = max((len(name) for name, _, _ in timings), default=0)
    lines = [f"  {name:<{width}}  {seconds:6.1f}s  {what}" for name, what, seconds in timings]
    lines.append(f"  {'total':<{width}}  {total:6.1f}s")
    return lines


class LiveView:
    """A block of lines that changes over time: redrawn on a terminal, appended otherwise.

    On a terminal, ``update`` moves the cursor back over the previous block and
    rewrites it; elsewhere, it writes the one-line form only when it differs
    from the last line written. ``commit`` leaves the current block on screen
    so that other output can follow it.
    """

    def __init__(self, stream: TextIO, *, tty: bool, width: int | None = None) -> None:
        self.stream = stream
        self.tty = tty
        self.width = width
        self._drawn = 0
        self._last_line: str | None = None

    def _fit(self, text: str) -> str:
        """A line that wraps would break the cursor arithmetic: cut it (plain) to the width."""
        width = self.width or shutil.get_terminal_size((120, 24)).columns
        if len(_ANSI.sub("", text)) < width:
            return text
        return _ANSI.sub("", text)[: width - 1]

    def update(self, block: Sequence[str], line: str, *, key: str | None = None) -> None:
        """Show ``block`` (terminal) or ``line`` (otherwise; only when ``key`` changed).

        ``key`` defaults to ``line``; pass one without the elapsed time so that
        a pipe gets a line per change rather than per tick.
        """
        if self.tty:
            out = []
            if self._drawn:
                out.append(f"\x1b[{self._drawn}F")  # to the start of the block's first line
            out.extend(f"\x1b[2K{self._fit(text)}\n" for text in block)
            for _ in range(self._drawn - len(block)):
                out.append("\x1b[2K\n")  # blank the lines a shorter block leaves behind
            self.stream.write("".join(out))
            self._drawn = max(self._drawn, len(block))
        else:
            marker = line if key is None else key
            if marker != self._last_line:
                self.stream.write(line + "\n")
                self._last_line = marker
        self.stream.flush()

    def commit(self) -> None:
        """Keep what is shown; the next ``update`` starts a new block below it."""
        self._drawn = 0
        self._last_line = None


class Narrator:
    """The demo's output: phase headers, commands as typed, results, and one live view.

    Colour and redrawing only when ``stream`` is a terminal (and ``NO_COLOR`` is
    unset and ``TERM`` is not ``dumb``); otherwise plain appended lines.
    """

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        if tty is None:
            tty = stream.isatty() and os.environ.get("TERM") != "dumb"
        self.stream = stream
        self.tty = tty
        self.style = Style(color=tty and "NO_COLOR" not in os.environ)
        self.live = LiveView(stream, tty=tty)

    def _write(self, text: str) -> None:
        self.live.commit()
        self.stream.write(text + "\n")
        self.stream.flush()

    def header(self, text: str) -> None:
        self._write("")
        self._write(self.style.bold(f"== {text}"))

    def say(self, text: str) -> None:
        self._write(f"  {text}")

    def command(self, text: str) -> None:
        self._write(self.style.dim(f"  $ {text}"))

    def ok(self, text: str) -> None:
        self._write(f"  {self.style.green('ok')} {text}")

    def lines(self, lines: Iterable[str]) -> None:
        for text in lines:
            self._write(text)

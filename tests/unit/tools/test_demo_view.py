"""How `make demo` reads: answers in one line, the rollout table, redrawing vs appending."""

from __future__ import annotations

import io
from typing import Any

from pkg_testbed.demo_view import (
    DeviceGroup,
    LiveView,
    Narrator,
    RolloutView,
    Style,
    answer_groups,
    bar,
    device_strip,
    fleet_line,
    rollout_block,
    rollout_line,
    step_text,
    summarize_answer,
    timings_table,
)

LABELS = {"hotel-rules@1.0.0": "1", "hotel-rules@2.0.0": "2"}
STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"pause": {"durationSeconds": 3}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 100},
]


def view(**status: object) -> RolloutView:
    groups = [
        DeviceGroup("router/eu-west", ("hotel-rules@2.0.0", "hotel-rules@1.0.0", None)),
        DeviceGroup("edge:door/eu-west", ("hotel-rules@1.0.0", "other@9")),
    ]
    return RolloutView("canary", status, STEPS, groups, LABELS, elapsed=4.25)


class TestAnswers:
    def test_subtasks_in_order_then_edges_merged_per_pair(self) -> None:
        answer = {
            "subtasks": [{"name": "check_allergens"}, {"name": "notify_kitchen"}],
            "dag": [
                {"from": "check_allergens", "to": "notify_kitchen", "type": "gate"},
                {"from": "check_allergens", "to": "notify_kitchen", "type": "sequential"},
            ],
        }
        assert summarize_answer(answer) == (
            "check_allergens, notify_kitchen  [check_allergens->notify_kitchen gate+sequential]"
        )

    def test_no_subtasks_says_so(self) -> None:
        assert summarize_answer({"subtasks": [], "dag": []}) == "(no subtasks)"

    def test_devices_fold_into_one_line_per_version_and_answer_in_order_seen(self) -> None:
        rows = [
            ("hotel-rules@2.0.0", "a, b"),
            ("hotel-rules@1.0.0", "a"),
            ("hotel-rules@2.0.0", "a, b"),
            (None, "x"),
        ]
        assert answer_groups(rows, LABELS) == [("2", 2, "a, b"), ("1", 1, "a"), ("-", 1, "x")]


class TestRolloutTable:
    def test_a_device_strip_has_one_character_per_device(self) -> None:
        versions = ("hotel-rules@1.0.0", "hotel-rules@2.0.0", None, "other@1")
        assert device_strip(versions, LABELS) == "12-?"

    def test_bar_is_clamped_and_proportional(self) -> None:
        assert bar(50, width=10) == "[#####.....]"
        assert bar(150, width=4) == "[####]"
        assert bar(-3, width=4) == "[....]"

    def test_steps_read_as_people_say_them(self) -> None:
        assert [step_text(STEPS, i) for i in range(6)] == [
            "setWeight 10",
            "pause 3s",
            "setWeight 50",
            "pause (gate)",
            "setWeight 100",
            "finishing",
        ]

    def test_the_plain_line_has_step_weight_coverage_and_every_device(self) -> None:
        line = rollout_line(
            view(
                summary="Paused",
                currentStepIndex=3,
                stepProgress="4/5",
                stepStartedAt="2026-01-01T00:00:00Z",
                weight=50,
                coverage={"onIntended": 8, "targeted": 8, "onCanary": 4, "expectedCanary": 4},
            )
        )
        assert "[+  4.2s] Paused" in line
        assert "step 4/5 pause (gate)" in line
        assert "weight  50%" in line
        assert "coverage 8/8  on canary 4 (expect 4)" in line
        assert line.endswith("| router/eu-west 21- | edge:door/eu-west 1?")

    def test_a_succeeded_rollout_says_the_canary_is_now_stable(self) -> None:
        line = rollout_line(view(summary="Succeeded", stepProgress="5/5", weight=0))
        assert "step 5/5 done, canary now stable" in line

    def test_a_step_not_started_yet_shows_no_step_name(self) -> None:
        assert "step 0/5 " in rollout_line(view(stepProgress="0/5", currentStepIndex=0))

    def test_the_terminal_block_colours_only_on_a_colour_terminal(self) -> None:
        plain = rollout_block(view(summary="Succeeded", weight=0), Style(color=False))
        coloured = rollout_block(view(summary="Succeeded", weight=0), Style(color=True))
        assert not any("\x1b[" in line for line in plain)
        assert "\x1b[32mSucceeded\x1b[0m" in coloured[0]
        assert plain[2].split() == ["router/eu-west", "2", "1", "-"]

    def test_the_fleet_line_lists_groups(self) -> None:
        groups = [DeviceGroup("router/us-east", ("hotel-rules@1.0.0",) * 2)]
        assert fleet_line(groups, LABELS, 1.0) == "  [+  1.0s] router/us-east 11"


class TestLiveView:
    def test_a_pipe_gets_a_line_per_change_not_per_tick(self) -> None:
        stream = io.StringIO()
        live = LiveView(stream, tty=False)
        live.update(["block"], "at 1s: A", key="A")
        live.update(["block"], "at 2s: A", key="A")
        live.update(["block"], "at 3s: B", key="B")
        assert stream.getvalue() == "at 1s: A\nat 3s: B\n"

    def test_a_terminal_gets_the_block_redrawn_in_place(self) -> None:
        stream = io.StringIO()
        live = LiveView(stream, tty=True, width=80)
        live.update(["one", "two"], "ignored")
        live.update(["three"], "ignored")
        assert stream.getvalue() == (
            "\x1b[2Kone\n\x1b[2Ktwo\n"  # first draw
            "\x1b[2F\x1b[2Kthree\n\x1b[2K\n"  # back two lines, redraw, blank the leftover
        )

    def test_a_line_wider_than_the_terminal_is_cut_not_wrapped(self) -> None:
        stream = io.StringIO()
        live = LiveView(stream, tty=True, width=10)
        live.update([Style(color=True).green("0123456789abc"), "short"], "")
        assert stream.getvalue() == "\x1b[2K012345678\n\x1b[2Kshort\n"

    def test_after_a_commit_the_next_block_starts_below(self) -> None:
        stream = io.StringIO()
        live = LiveView(stream, tty=True)
        live.update(["one"], "")
        live.commit()
        live.update(["two"], "")
        assert "\x1b[1F" not in stream.getvalue()

    def test_narration_commits_the_live_block_first(self) -> None:
        stream = io.StringIO()
        out = Narrator(stream, tty=False)
        out.live.update([], "state A", key="A")
        out.say("something happened")
        out.live.update([], "state A again", key="A")
        assert stream.getvalue().splitlines() == [
            "state A",
            "  something happened",
            "state A again",
        ]


def test_the_summary_has_a_line_per_phase_and_a_total() -> None:
    lines = timings_table([("stack", "servers", 4.84), ("canary", "rollout", 10.0)], 15.2)
    assert lines == [
        "  stack      4.8s  servers",
        "  canary    10.0s  rollout",
        "  total     15.2s",
    ]

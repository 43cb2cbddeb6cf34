"""``kubectl-pkg``: follow and steer rollouts (get, status, watch, the actions) and report.

``diff``, ``coverage``, ``history`` and ``audit verify`` report; the last three read
PostgreSQL (``--database-url`` or ``$PKG_DATABASE_URL``) through the store layer.

kubectl runs any ``kubectl-*`` program on ``PATH`` as a plugin, so installing the project
is enough. It reads the same kubeconfig as kubectl (``$KUBECONFIG``, ``--kubeconfig``,
``--context``) and namespace (``-n``, else the context's). The actions write the
``pkg.seedcore.io/action`` annotation (README "Two ways to promote") with a fresh token
and the caller's identity, then wait until the operator has recorded the outcome in the
status, print it and exit 0 (accepted), 1 (refused) or 3 (no outcome in time). ``watch``
exits 0 when the rollout succeeded and 4 when it ended otherwise (see
:mod:`pkg_operator.plugin.view` for every code).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from evaluator_sidecar.policy.resource import load_documents, select_policy_snapshot
from evaluator_sidecar.store.errors import PKGError
from pkg_operator.api import ACTION_ANNOTATION
from pkg_operator.kube import KubeError, UserClient
from pkg_operator.plugin import database, reports, view
from pkg_operator.settings import PluginSettings

__all__ = ["main"]

#: Which actions each resource takes (the operator refuses others; we say so first).
ACTIONS = {
    "policydeployments": {"promote", "promote-full", "abort", "retry", "rollback"},
    "policysnapshots": {"promote", "rollback"},
}


class UsageError(Exception):
    """A request that cannot be made as typed; the message says how to type it."""


def _common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: the flags may come before or after the command without one erasing the other.
    s = argparse.SUPPRESS
    parser.add_argument("-n", "--namespace", default=s, help="namespace (default: the context's)")
    parser.add_argument("--context", default=s, help="kubeconfig context (default: current)")
    parser.add_argument("--kubeconfig", default=s, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument(
        "-o", "--output", choices=["text", "json", "yaml"], default=s, help="output format"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl pkg",
        description="Follow and steer PolicyDeployment rollouts and PolicySnapshot promotions.",
    )
    _common(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    what = "[pdep|psnap] NAME (default pdep)"
    for name, help_ in (
        ("get", "list deployments or snapshots, or show one's status tree"),
        ("status", "the same as get"),
    ):
        sub = commands.add_parser(name, help=help_)
        _common(sub)
        sub.add_argument("target", nargs="*", metavar="ARG", help="[pdep|psnap] [NAME]")
        sub.add_argument(
            "-A", "--all-namespaces", action="store_true", help="list every namespace's"
        )
    watch = commands.add_parser("watch", help="follow a rollout until it ends")
    _common(watch)
    watch.add_argument("target", nargs="+", metavar="ARG", help="[pdep] NAME")
    watch.add_argument("--timeout", type=float, default=1800, help="seconds (default 1800)")
    watch.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    for name, help_ in (
        ("promote", "promote a snapshot, or finish a deployment's pause early"),
        ("abort", "abort a deployment's rollout (back to stable)"),
        ("retry", "start a new attempt of an ended rollout"),
        ("rollback", "roll a deployment or a snapshot's environment back"),
    ):
        sub = commands.add_parser(name, help=help_)
        _common(sub)
        sub.add_argument("target", nargs="+", metavar="ARG", help=what)
        if name == "promote":
            sub.add_argument("--full", action="store_true", help="skip to 100%% (deployments)")
        sub.add_argument("--reason", default="", help="why (kept in the audit trail)")
        sub.add_argument("--token", default=None, help="the request's token (default: fresh)")
        sub.add_argument("--timeout", type=float, default=60, help="seconds (default 60)")
    _reports(commands)
    return parser


def _reports(commands: Any) -> None:
    database = {
        "default": PluginSettings().database_url or None,
        "help": "PostgreSQL URL (default: $PKG_DATABASE_URL)",
    }
    diff = commands.add_parser("diff", help="rules added, removed and changed between snapshots")
    _common(diff)
    diff.add_argument("a", metavar="SNAPSHOT_A", help="a PolicySnapshot name or a YAML file")
    diff.add_argument("b", metavar="SNAPSHOT_B", help="a PolicySnapshot name or a YAML file")
    coverage = commands.add_parser("coverage", help="each device of a deployment's target")
    _common(coverage)
    coverage.add_argument("target", nargs="+", metavar="ARG", help="[pdep] NAME")
    coverage.add_argument("--database-url", **database)
    history = commands.add_parser("history", help="attempts, actions and promotions")
    _common(history)
    history.add_argument("target", nargs="+", metavar="ARG", help="[pdep|psnap] NAME")
    history.add_argument("--database-url", **database)
    audit = commands.add_parser("audit", help="audit log checks")
    _common(audit)
    audit.add_argument("check", choices=["verify"], help="verify: recompute the hash chain")
    audit.add_argument("--database-url", **database)


def _target(args: argparse.Namespace) -> tuple[str, str]:
    parts: list[str] = args.target
    if len(parts) == 1 and "/" in parts[0]:
        parts = parts[0].split("/", 1)
    if len(parts) == 1:
        return "policydeployments", parts[0]
    if len(parts) == 2:
        try:
            return view.resource(parts[0]), parts[1]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    raise UsageError(f"expected [pdep|psnap] NAME, got {' '.join(parts)!r}")


def _dump(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    return yaml.safe_dump(data, sort_keys=True).rstrip()


def _rich_tree(node: view.Node, tree: Tree | None = None) -> Tree:
    label = Text(node.label)  # plain text: an outcome may hold [brackets] rich would parse
    tree = Tree(label) if tree is None else tree.add(label)
    for child in node.children:
        _rich_tree(child, tree)
    return tree


class Plugin:
    """One invocation: the client, the namespace, the output, the console."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args, self.console = args, console
        self.output: str = getattr(args, "output", "text")
        self.tty = console.is_terminal

    # Lazy: ``audit verify`` needs only the database, not a kubeconfig.
    @functools.cached_property
    def client(self) -> UserClient:
        return UserClient(
            getattr(self.args, "context", None), getattr(self.args, "kubeconfig", None)
        )

    @functools.cached_property
    def namespace(self) -> str:
        return getattr(self.args, "namespace", None) or self.client.namespace

    def print(self, text: str) -> None:
        print(text, flush=True)

    def fetch(self, plural: str, name: str) -> dict[str, Any]:
        obj = self.client.get(plural, self.namespace, name)
        if obj is None:
            raise UsageError(f"{plural} {self.namespace}/{name} not found")
        return obj

    def show(self, obj: dict[str, Any]) -> None:
        if self.output != "text":
            self.print(_dump(obj, self.output))
            return
        meta = obj.get("metadata") or {}
        events = self.client.events(self.namespace, str(meta.get("name")), meta.get("uid"))
        if self.tty:
            self.console.print(_rich_tree(view.tree(obj, events)))
        else:
            self.print("\n".join(view.lines(view.tree(obj, events))))

    def get(self) -> int:
        parts: list[str] = self.args.target
        if len(parts) <= 1 and (not parts or parts[0].lower() in view.KINDS):
            return self.listing(view.resource(parts[0]) if parts else "policydeployments")
        plural, name = _target(self.args)
        self.show(self.fetch(plural, name))
        return view.EXIT_OK

    def listing(self, plural: str) -> int:
        namespace = None if self.args.all_namespaces else self.namespace
        objs = self.client.list(plural, namespace)
        if self.output != "text":
            self.print(_dump({"items": objs}, self.output))
            return view.EXIT_OK
        header, table = view.rows(objs)
        if self.tty:
            grid = Table(*header, box=None)
            for row in table:
                grid.add_row(*(Text(cell) for cell in row))
            self.console.print(grid)
        else:
            self.print("\n".join(view.plain_table(header, table)))
        return view.EXIT_OK

    def act(self) -> int:
        plural, name = _target(self.args)
        action = self.args.command
        if getattr(self.args, "full", False):
            action = "promote-full"
        if action not in ACTIONS[plural]:
            allowed = ", ".join(sorted(ACTIONS[plural]))
            raise UsageError(f"{plural} take {allowed}; not {action}")
        self.fetch(plural, name)
        token = self.args.token or f"kubectl-pkg-{uuid.uuid4().hex[:16]}"
        actor = self.client.whoami()
        value = view.action_value(action, token, actor, self.args.reason)
        self.client.annotate(plural, self.namespace, name, ACTION_ANNOTATION, value)
        found = self._wait(lambda: view.recorded(self.fetch(plural, name), token))
        if found is None:
            self.print(
                f"{plural}/{name}: no outcome for {action} (token {token}) within "
                f"{self.args.timeout:.0f}s: is the operator running and watching "
                f"{self.namespace}?"
            )
            return view.EXIT_TIMEOUT
        if self.output != "text":
            self.print(
                _dump(
                    {"token": token, "resource": f"{plural}/{name}", **found.to_dict()}, self.output
                )
            )
        else:
            verdict = "accepted" if found.accepted else "REFUSED"
            self.print(f"{plural}/{name}: {action} {verdict} (by {found.actor}): {found.outcome}")
        return view.EXIT_OK if found.accepted else view.EXIT_REFUSED

    def table(self, header: Sequence[str], cells: Sequence[Sequence[str]]) -> None:
        if self.tty:
            grid = Table(*header, box=None)
            for row in cells:
                grid.add_row(*(Text(cell) for cell in row))
            self.console.print(grid)
        else:
            self.print("\n".join(view.plain_table(header, cells)))

    def rules_of(self, ref: str) -> tuple[str, list[dict[str, Any]]]:
        """A snapshot's rules: from a file when ``ref`` is a path, else the named object."""
        path = Path(ref)
        if path.is_file():
            try:
                doc = select_policy_snapshot(load_documents(path.read_text()))
            except (OSError, ValueError) as exc:
                raise UsageError(f"{ref}: {exc}") from None
            return str(path), list((doc.get("spec") or {}).get("rules") or [])
        obj = self.fetch("policysnapshots", ref)
        spec = obj.get("spec") or {}
        return f"{ref} ({spec.get('version')})", list(spec.get("rules") or [])

    def diff(self) -> int:
        name_a, rules_a = self.rules_of(self.args.a)
        name_b, rules_b = self.rules_of(self.args.b)
        diff = reports.rule_diff(rules_a, rules_b)
        if self.output != "text":
            self.print(_dump({"a": name_a, "b": name_b, **diff}, self.output))
        else:
            self.print("\n".join(reports.diff_lines(diff, name_a, name_b)))
        return view.EXIT_OK

    def _database(self, why: str) -> str:
        url: str | None = self.args.database_url
        if not url:
            raise UsageError(
                f"{why} needs the database: set PKG_DATABASE_URL or pass --database-url"
            )
        return url

    def coverage(self) -> int:
        plural, name = _target(self.args)
        if plural != "policydeployments":
            raise UsageError("coverage is a PolicyDeployment's (pdep NAME)")
        obj = self.fetch(plural, name)
        if not self.args.database_url:
            summary = reports.coverage_from_status(obj)
            if self.output != "text":
                self.print(_dump(summary, self.output))
            else:
                self.print("\n".join(view.lines(view.tree(obj))[:8]))
                print(f"note: {reports.NO_DATABASE_NOTE}", file=sys.stderr)
            return view.EXIT_OK
        spec = obj.get("spec") or {}
        devices = database.device_rows(
            self.args.database_url,
            str(spec.get("env")),
            str(spec.get("target")),
            str(spec.get("region") or "global"),
        )
        rows = reports.coverage_rows(obj, devices)
        if self.output != "text":
            self.print(_dump({"deployment": name, "devices": rows}, self.output))
        else:
            self.table(reports.COVERAGE_HEADER, reports.coverage_table(rows))
        return view.EXIT_OK

    def history(self) -> int:
        plural, name = _target(self.args)
        obj = self.fetch(plural, name)
        promotions: list[dict[str, Any]] = []
        audit: list[dict[str, Any]] = []
        url = self.args.database_url
        if url and plural == "policysnapshots":
            stored = database.snapshot_id(url, str((obj.get("spec") or {}).get("version")))
            if stored is not None:
                promotions = database.promotions(url, stored)
                audit = database.audit_rows(url, snapshot=stored)
        elif url:
            uid = str((obj.get("metadata") or {}).get("uid"))
            audit = database.audit_rows(url, entity_type="deployment", entity_id=uid)
        entries = reports.history_entries(obj, promotions, audit)
        if self.output != "text":
            self.print(_dump({"resource": f"{plural}/{name}", "entries": entries}, self.output))
            return view.EXIT_OK
        self.table(reports.HISTORY_HEADER, reports.history_table(entries))
        if not url:
            print(
                "note: promotions and audit rows need the database: "
                "set PKG_DATABASE_URL or pass --database-url",
                file=sys.stderr,
            )
        return view.EXIT_OK

    def audit(self) -> int:
        report = database.verify_chain(self._database("audit verify"))
        if self.output != "text":
            broken = report.first_break
            self.print(
                _dump(
                    {
                        "ok": report.ok,
                        "rowsChecked": report.rows_checked,
                        "firstBreak": None
                        if broken is None
                        else {
                            "row": broken.row_id,
                            "problem": broken.problem,
                            "expected": broken.expected,
                            "stored": broken.stored,
                        },
                    },
                    self.output,
                )
            )
        else:
            self.print(str(report))
        return view.EXIT_OK if report.ok else view.EXIT_REFUSED

    def _wait(self, check: Callable[[], view.Recorded | None]) -> view.Recorded | None:
        deadline = time.monotonic() + self.args.timeout
        while True:
            found = check()
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(0.3)

    def watch(self) -> int:
        plural, name = _target(self.args)
        if plural != "policydeployments":
            raise UsageError("watch follows PolicyDeployments (pdep NAME)")
        deadline = time.monotonic() + self.args.timeout
        if self.tty and self.output == "text":
            return self._watch_live(name, deadline)
        last = None
        while True:
            obj = self.fetch(plural, name)
            shown = (
                view.progress_line(obj)
                if self.output == "text"
                else json.dumps(obj.get("status") or {}, sort_keys=True)
                if self.output == "json"
                else "---\n" + _dump(obj.get("status") or {}, "yaml")
            )
            if shown != last:
                self.print(shown)
                last = shown
            code = view.ending(obj)
            if code is not None:
                return code
            if time.monotonic() >= deadline:
                self.print(f"{name}: still {(obj.get('status') or {}).get('summary')}; timed out")
                return view.EXIT_TIMEOUT
            time.sleep(self.args.interval)

    def _watch_live(self, name: str, deadline: float) -> int:
        with Live(console=self.console, auto_refresh=False) as live:
            while True:
                obj = self.fetch("policydeployments", name)
                coverage = float(
                    ((obj.get("status") or {}).get("coverage") or {}).get("percent") or 0
                )
                bar = ProgressBar(total=100, completed=coverage, width=40)
                live.update(Group(_rich_tree(view.tree(obj)), bar), refresh=True)
                code = view.ending(obj)
                if code is not None:
                    return code
                if time.monotonic() >= deadline:
                    return view.EXIT_TIMEOUT
                time.sleep(self.args.interval)


#: Each command -> the :class:`Plugin` method that runs it.
COMMANDS = {
    "get": "get",
    "status": "get",
    "watch": "watch",
    "promote": "act",
    "abort": "act",
    "retry": "act",
    "rollback": "act",
    "diff": "diff",
    "coverage": "coverage",
    "history": "history",
    "audit": "audit",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    try:
        plugin = Plugin(args, console)
        run: Callable[[], int] = getattr(plugin, COMMANDS[args.command])
        return run()
    except (UsageError, KubeError, PKGError) as exc:
        # Each says what to do (a name to check, a flag to pass, a permission to ask for).
        print(f"kubectl pkg: {exc}", file=sys.stderr)
        return view.EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

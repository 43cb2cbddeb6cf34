"""The offline ``pkg`` command: evaluate, test and checksum PolicySnapshot files.

::

    pkg eval SNAPSHOT.yaml --facts FACTS.json   # print the evaluation result as JSON
    pkg eval SNAPSHOT.yaml --facts -            # task facts from stdin
    pkg test SNAPSHOT.yaml                      # run the snapshot's fixtures
    pkg checksum SNAPSHOT.yaml                  # the content checksum for spec.checksum

SNAPSHOT.yaml is the file you would ``kubectl apply`` (several documents are
fine; ``--name`` picks a PolicySnapshot when the file has more than one; ``-``
reads stdin). A wasm snapshot whose module lives in a ConfigMap takes the
module's bytes from ``--wasm-file PATH``. Nothing talks to a cluster.

Exit codes: 0 success; 1 a fixture failed (``pkg test``); 2 usage error or
invalid input (unreadable or malformed file, invalid snapshot, checksum
mismatch, bad task facts, unavailable engine). Errors go to stderr as one
message saying what to fix; results go to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from evaluator_sidecar.policy.errors import EvaluatorError
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.fixtures import run_fixtures
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.policy.resource import (
    content_checksum,
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
    validate_resource,
    wasm_artifact,
)

__all__ = ["EXIT_FIXTURES_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FIXTURES_FAILED = 1
EXIT_USAGE = 2


class _UserError(Exception):
    """A mistake in the command's input: reported as one message, exit code 2."""


def _read_text(path: str, what: str, stdin: TextIO) -> str:
    if path == "-":
        return stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise _UserError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise _UserError(f"{what} {path!r} is not UTF-8 text: {exc}") from exc


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise _UserError(f"cannot read --wasm-file {path!r}: {exc.strerror or exc}") from exc


def _resource(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    text = _read_text(args.snapshot, "snapshot file", stdin)
    try:
        return select_policy_snapshot(load_documents(text), args.name)
    except ValueError as exc:
        raise _UserError(f"{args.snapshot}: {exc}") from exc


def _snapshot(args: argparse.Namespace, stdin: TextIO) -> PKGSnapshotData:
    resource = _resource(args, stdin)
    wasm = _read_bytes(args.wasm_file) if args.wasm_file else None
    return snapshot_from_resource(resource, wasm_bytes=wasm)


def _cmd_eval(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    if args.snapshot == "-" and args.facts == "-":
        raise _UserError("the snapshot and the task facts cannot both come from stdin")
    evaluator = PKGEvaluator(_snapshot(args, stdin))
    text = _read_text(args.facts, "task facts file", stdin)
    try:
        task_facts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _UserError(f"task facts {args.facts!r} are not valid JSON: {exc}") from exc
    result = evaluator.evaluate(task_facts)
    json.dump(result, stdout, indent=None if args.compact else 2, ensure_ascii=False)
    stdout.write("\n")
    return EXIT_OK


def _cmd_test(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    snapshot = _snapshot(args, stdin)
    evaluator = PKGEvaluator(snapshot)
    report = run_fixtures(evaluator.evaluate, snapshot.fixtures)
    if args.json:
        json.dump(report.to_dict(), stdout, indent=2, ensure_ascii=False)
        stdout.write("\n")
    elif report.total == 0:
        stdout.write(f"snapshot {snapshot.version}: no fixtures to run (add spec.fixtures)\n")
    else:
        stdout.write(f"snapshot {snapshot.version} ({snapshot.engine}):\n{report.format()}\n")
    return EXIT_OK if report.success else EXIT_FIXTURES_FAILED


def _cmd_checksum(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    resource = _resource(args, stdin)
    problems = validate_resource(resource)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise _UserError(f"{args.snapshot} is not a valid PolicySnapshot:\n{lines}")
    spec = resource["spec"]
    artifact = None
    if spec.get("engine") == "wasm":
        wasm = _read_bytes(args.wasm_file) if args.wasm_file else None
        try:
            artifact = wasm_artifact(spec, wasm_bytes=wasm)
        except ValueError as exc:
            raise _UserError(str(exc)) from exc
    stdout.write(f"{content_checksum(spec, artifact)}\n")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pkg",
        description="Evaluate, test and checksum PolicySnapshot files offline.",
        epilog="Exit codes: 0 ok, 1 a fixture failed, 2 usage error or invalid input.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "snapshot", metavar="SNAPSHOT.yaml", help="PolicySnapshot YAML ('-' for stdin)"
        )
        sub.add_argument("--name", help="which PolicySnapshot, when the file has several")
        sub.add_argument(
            "--wasm-file",
            metavar="PATH",
            help="the WASM module of a snapshot whose wasm.configMapRef names it",
        )

    ev = commands.add_parser("eval", help="evaluate task facts and print the result as JSON")
    common(ev)
    ev.add_argument(
        "--facts", required=True, metavar="FACTS.json", help="task facts JSON ('-' for stdin)"
    )
    ev.add_argument("--compact", action="store_true", help="print the result on one line")
    ev.set_defaults(run=_cmd_eval)

    test = commands.add_parser("test", help="run the snapshot's fixtures; exit 1 when one fails")
    common(test)
    test.add_argument("--json", action="store_true", help="print the report as JSON")
    test.set_defaults(run=_cmd_test)

    checksum = commands.add_parser(
        "checksum", help="print the content checksum to put in spec.checksum"
    )
    common(checksum)
    checksum.set_defaults(run=_cmd_checksum)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.run(args, stdin, stdout))
    except (_UserError, EvaluatorError) as exc:
        stderr.write(f"pkg {args.command}: error: {exc}\n")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

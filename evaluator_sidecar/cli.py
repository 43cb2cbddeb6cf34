"""The offline ``pkg`` command: evaluate, test, checksum, sign and verify PolicySnapshot files.

::

    pkg eval SNAPSHOT.yaml --facts FACTS.json   # print the evaluation result as JSON
    pkg eval SNAPSHOT.yaml --facts -            # task facts from stdin
    pkg test SNAPSHOT.yaml                      # run the snapshot's fixtures
    pkg checksum SNAPSHOT.yaml                  # the content checksum for spec.checksum
    pkg keygen --out DIR                        # a new ed25519 key pair; prints its key id
    pkg sign SNAPSHOT.yaml --key DIR/ID.key     # print the file with spec.signature (-i: in place)
    pkg verify SNAPSHOT.yaml --trusted DIR      # check spec.signature against trusted public keys
    pkg replay SNAPSHOT.yaml --decisions FILE   # recorded decisions against a candidate
    pkg diff --candidate VERSION                # a shadow step's stored example diffs
    pkg serve SNAPSHOT.yaml [--port 8080]       # the sidecar's HTTP API on the file (reloads it)

``pkg replay`` reads JSON lines (or one JSON array) of recorded decisions,
``{"input": TASK_FACTS, "output": DECISION}`` (the body ``/v1/evaluate`` answered),
evaluates each input with the snapshot and reports how many decisions differ
(subtasks, DAG or matched rules: the shadow step's measure); with
``--max-diff-rate R`` it exits 1 above R. ``pkg diff`` is the one command that
reads PostgreSQL (``--dsn`` or ``PKG_DATABASE_URL``): the example diffs shadow
steps stored in ``pkg_shadow_diffs``.

SNAPSHOT.yaml is the file you would ``kubectl apply`` (several documents are
fine; ``--name`` picks a PolicySnapshot when the file has more than one; ``-``
reads stdin; not for ``serve``). A wasm snapshot whose module lives in a ConfigMap takes the
module's bytes from ``--wasm-file PATH``. Nothing talks to a cluster.

``pkg serve`` is the sidecar's standalone mode
(:mod:`evaluator_sidecar.sidecar.standalone`): the ``pkg`` console script
(:mod:`evaluator_sidecar.commands`) hands this module the function that runs it,
since the offline CLI itself never imports the sidecar's runtime.

``pkg sign`` rewrites the YAML (comments are not kept). A trusted-keys folder
holds one public key per file, named by its key id (``ID`` or ``ID.pub``): the
layout of a mounted ConfigMap; private ``*.key`` files and dot files are skipped.

Exit codes: 0 success; 1 a fixture failed (``pkg test``), the signature does not
verify (``pkg verify``) or the diff rate is above ``--max-diff-rate`` (``pkg
replay``); 2 usage error or
invalid input (unreadable or malformed file, invalid snapshot, checksum
mismatch, bad task facts, unavailable engine). Errors go to stderr as one
message saying what to fix; results go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

from evaluator_sidecar.policy import signing
from evaluator_sidecar.policy.errors import EvaluatorError
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.fixtures import run_fixtures
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.policy.replay import replay
from evaluator_sidecar.policy.resource import (
    content_checksum,
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
    validate_resource,
    wasm_artifact,
)
from evaluator_sidecar.store.client import PKGClient

__all__ = [
    "EXIT_DIFF_TOO_HIGH",
    "EXIT_FIXTURES_FAILED",
    "EXIT_NOT_VERIFIED",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
EXIT_FIXTURES_FAILED = 1
EXIT_NOT_VERIFIED = 1
EXIT_USAGE = 2
EXIT_DIFF_TOO_HIGH = 1


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


def _read_bytes(path: str, what: str = "--wasm-file") -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise _UserError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc


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


def _cmd_keygen(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    key = signing.generate_private_key()
    key_id = signing.key_id_of(key.public_key())
    try:
        os.makedirs(args.out, exist_ok=True)
        private = os.path.join(args.out, f"{key_id}.key")
        public = os.path.join(args.out, f"{key_id}{signing.PUBLIC_SUFFIX}")
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(signing.private_key_pem(key))
        with open(public, "xb") as handle:
            handle.write(signing.public_key_pem(key.public_key()))
    except OSError as exc:
        raise _UserError(f"cannot write the key pair into {args.out!r}: {exc}") from exc
    stdout.write(
        f"{key_id}\n"
        f"# private key (keep it secret; sign with it): {private}\n"
        f"# public key (trust it, as key {key_id}): {public}\n"
    )
    return EXIT_OK


def _content_of(args: argparse.Namespace, resource: dict[str, Any]) -> PKGSnapshotData:
    wasm = _read_bytes(args.wasm_file) if args.wasm_file else None
    return snapshot_from_resource(resource, wasm_bytes=wasm)


def _cmd_sign(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    if args.in_place and args.snapshot == "-":
        raise _UserError("-i rewrites a file: give a file, not stdin")
    text = _read_text(args.snapshot, "snapshot file", stdin)
    try:
        documents = load_documents(text)
        resource = select_policy_snapshot(documents, args.name)
    except ValueError as exc:
        raise _UserError(f"{args.snapshot}: {exc}") from exc
    try:
        key = signing.load_private_key(_read_bytes(args.key, "--key"))
    except signing.KeyFormatError as exc:
        raise _UserError(f"--key {args.key!r}: {exc}") from exc
    snapshot = _content_of(args, resource)
    resource["spec"]["signature"] = signing.sign(
        key, version=snapshot.version, env=snapshot.env, checksum=str(snapshot.checksum)
    )
    out = yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)
    if args.in_place:
        try:
            with open(args.snapshot, "w", encoding="utf-8") as handle:
                handle.write(out)
        except OSError as exc:
            raise _UserError(f"cannot write {args.snapshot!r}: {exc}") from exc
        stdout.write(
            f"signed {snapshot.version} with key {resource['spec']['signature']['keyId']}\n"
        )
    else:
        stdout.write(out)
    return EXIT_OK


def _trusted_keys(folder: str) -> signing.TrustStore:
    texts: dict[str, bytes] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise _UserError(f"cannot read --trusted {folder!r}: {exc.strerror or exc}") from exc
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith(".") or name.endswith(".key") or not os.path.isfile(path):
            continue
        texts[name] = _read_bytes(path, "trusted key")
    store, problems = signing.TrustStore.from_texts(texts)
    if problems:
        raise _UserError(f"--trusted {folder!r}: " + "; ".join(problems))
    return store


def _cmd_verify(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    resource = _resource(args, stdin)
    snapshot = _content_of(args, resource)
    result = signing.verify(
        snapshot.signature,
        _trusted_keys(args.trusted),
        version=snapshot.version,
        env=snapshot.env,
        checksum=str(snapshot.checksum),
    )
    stdout.write(f"{result.outcome.value}: {result.message}\n")
    return EXIT_OK if result.verified else EXIT_NOT_VERIFIED


def _records(text: str, path: str) -> list[dict[str, Any]]:
    try:
        stripped = text.strip()
        rows = (
            json.loads(stripped)
            if stripped.startswith("[")
            else [json.loads(line) for line in stripped.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as exc:
        raise _UserError(f"decisions {path!r}: not JSON lines or a JSON array: {exc}") from exc
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not isinstance(row.get("input"), dict):
            raise _UserError(
                f"decisions {path!r}, record {number}: needs an object with 'input' (task "
                "facts) and 'output' (the decision recorded)"
            )
        if not isinstance(row.get("output"), dict):
            raise _UserError(f"decisions {path!r}, record {number}: 'output' must be an object")
    return list(rows)


def _cmd_replay(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    if args.snapshot == "-" and args.decisions == "-":
        raise _UserError("the snapshot and the decisions cannot both come from stdin")
    snapshot = _snapshot(args, stdin)
    evaluator = PKGEvaluator(snapshot)
    records = _records(_read_text(args.decisions, "decisions file", stdin), args.decisions)
    report = replay(evaluator.evaluate, snapshot.version, records, max_examples=args.examples)
    if args.json:
        json.dump(report.to_dict(), stdout, indent=2, ensure_ascii=False)
        stdout.write("\n")
    else:
        stdout.write(report.format() + "\n")
    over = args.max_diff_rate is not None and report.diff_rate > args.max_diff_rate
    return EXIT_DIFF_TOO_HIGH if over else EXIT_OK


def _cmd_diff(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    dsn = args.dsn or os.environ.get("PKG_DATABASE_URL")
    if not dsn:
        raise _UserError("give --dsn or set PKG_DATABASE_URL (the PKG database)")

    async def fetch() -> list[dict[str, Any]]:
        client = PKGClient(dsn, max_size=1)
        try:
            return await client.get_shadow_diffs(
                candidate_version=args.candidate, deployment_uid=args.deployment, limit=args.limit
            )
        finally:
            await client.close()

    rows = asyncio.run(fetch())
    json.dump(rows, stdout, indent=2, ensure_ascii=False, default=str)
    stdout.write("\n")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pkg",
        description="Evaluate, test, checksum, sign and verify PolicySnapshot files offline.",
        epilog="Exit codes: 0 ok, 1 a fixture failed or a signature does not verify, "
        "2 usage error or invalid input.",
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

    keygen = commands.add_parser(
        "keygen", help="write a new ed25519 key pair (ID.key, ID.pub) and print its key id"
    )
    keygen.add_argument("--out", default=".", metavar="DIR", help="folder to write into")
    keygen.set_defaults(run=_cmd_keygen)

    sign = commands.add_parser("sign", help="write spec.signature into the snapshot's YAML")
    common(sign)
    sign.add_argument("--key", required=True, metavar="PRIVATE_KEY", help="from pkg keygen")
    sign.add_argument(
        "-i", "--in-place", action="store_true", help="rewrite the file instead of printing it"
    )
    sign.set_defaults(run=_cmd_sign)

    verify = commands.add_parser(
        "verify", help="check spec.signature against trusted keys; exit 1 unless verified"
    )
    common(verify)
    verify.add_argument(
        "--trusted", required=True, metavar="DIR", help="folder of public keys named by key id"
    )
    verify.set_defaults(run=_cmd_verify)

    _add_shadow_commands(commands, common)

    serve = commands.add_parser(
        "serve",
        help="run the sidecar's HTTP API on the file, no PostgreSQL or Redis; reload on change",
        description="Serve POST /v1/evaluate, /healthz, /readyz, /metrics ... (the sidecar's "
        "HTTP API) from a PolicySnapshot file, checked, compiled and self-tested as the "
        "sidecar does. A changed file is activated atomically; a bad one keeps the last good "
        "snapshot serving and shows its error in /healthz. Other settings: PKG_ variables.",
    )
    serve.add_argument("snapshot", metavar="SNAPSHOT.yaml", help="PolicySnapshot YAML or JSON")
    serve.add_argument("--name", help="which PolicySnapshot, when the file has several")
    serve.add_argument("--host", help="address to listen on (default PKG_HTTP_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default PKG_HTTP_PORT, 8080; 0: any)")
    serve.add_argument(
        "--env", choices=["prod", "staging", "dev"], help="environment (default: the file's)"
    )
    serve.add_argument(
        "--poll", type=float, metavar="SECONDS", help="how often to check the file (default 1)"
    )
    serve.set_defaults(run=None)
    return parser


def _add_shadow_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``pkg replay`` and ``pkg diff``: a shadow step's measure, offline and as stored."""
    rep = commands.add_parser(
        "replay", help="evaluate recorded decisions with a candidate and report the diff"
    )
    common(rep)
    rep.add_argument(
        "--decisions",
        required=True,
        metavar="FILE",
        help='JSON lines of {"input": ..., "output": ...} (\'-\' for stdin)',
    )
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument("--examples", type=int, default=10, help="example diffs to show (10)")
    rep.add_argument(
        "--max-diff-rate", type=float, metavar="R", help="exit 1 when the diff rate is above R"
    )
    rep.set_defaults(run=_cmd_replay)

    diff = commands.add_parser("diff", help="print a shadow step's stored example diffs")
    diff.add_argument("--candidate", metavar="VERSION", help="the candidate snapshot's version")
    diff.add_argument("--deployment", metavar="UID", help="a PolicyDeployment's metadata.uid")
    diff.add_argument("--limit", type=int, default=20, help="newest examples to print (20)")
    diff.add_argument("--dsn", help="PostgreSQL DSN (default: $PKG_DATABASE_URL)")
    diff.set_defaults(run=_cmd_diff)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    serve: Callable[[argparse.Namespace], int] | None = None,
) -> int:
    """Run the CLI; returns the exit code (the console script exits with it).

    ``serve`` runs ``pkg serve`` with its parsed options (the sidecar's standalone mode).
    """
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "serve":
        if serve is None:
            stderr.write(
                "pkg serve: run it through the `pkg` command (evaluator_sidecar.commands)\n"
            )
            return EXIT_USAGE
        return serve(args)
    try:
        return int(args.run(args, stdin, stdout))
    except (_UserError, EvaluatorError) as exc:
        stderr.write(f"pkg {args.command}: error: {exc}\n")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

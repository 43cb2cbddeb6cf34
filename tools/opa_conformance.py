"""OPA's own topdown test cases, run in the WASM engine (``make conformance``).

The cases are the YAML files of ``v1/test/cases/testdata/{v0,v1}`` in the OPA
Go module the test bed's ``opa`` was built from (found in the Go module cache,
or fetched with ``go mod download`` for that version). Each case's query is
wrapped in a partial-set rule (``results contains {"x": x, ...} if { <query> }``,
one binding object per solution, the variables being those the case expects),
built with the test bed's ``opa build -t wasm`` (a query reading all of ``data``,
which would read that rule too, is compiled as a query, as OPA's own harness compiles
every case: ``opa_conformance_build``), loaded into the WASM engine with
the case's ``data`` and run on its ``input``. Results are compared as OPA's own
wasm harness does (``internal/wasm/sdk/test/e2e/external_test.go``): the result
set as a set of binding objects, binding arrays sorted for ``sort_bindings``,
``strict_error`` cases expecting an empty result, error cases expecting an
evaluation error (only ``eval_conflict_error`` is checked there), and the cases
named in OPA's ``exceptions.yaml`` skipped.

Built modules are cached under ``~/.cache/pkg-operator/opa-conformance/<opa
version>/`` keyed by a hash of what went into the build, and wasmtime's
compiled form of each under ``.../opa-conformance/compiled/`` (the engine's
authenticated disk cache, keyed by the module's sha256, wasmtime's version and
the engine configuration; bounded by ``--compiled-cache-mb``, 0 turns it off),
so a second run neither builds nor compiles: it only evaluates. Building and
running use a process per CPU.

Every case ends in one outcome: ``pass``, ``fail`` (with the difference) or
``skip`` with a reason (OPA's exception list, a refused builtin, or what OPA's
wasm harness cannot meet either: a query that does not compile to wasm, an error
code it does not check). An ``input_term`` JSON cannot express (sets) goes to the
module as Rego text, as OPA's Go harness hands it over.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import decimal
import functools
import json
import logging
import multiprocessing
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from opa_conformance_build import Built, build_case, build_skip_reason
from opa_conformance_compare import compare_result_set, short, to_plain
from opa_conformance_report import details as _details
from opa_conformance_report import table

ROOT = Path(__file__).resolve().parents[1]
#: OPA's harness has no deadline; a loaded shared machine must not fail a case on time.
LIMITS_DEADLINE_MS = 5_000
CACHE_ROOT = (
    Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
    / "pkg-operator"
    / "opa-conformance"
)

#: wasmtime's compiled modules: ~0.5 MiB each, ~4,200 distinct modules in a full run.
COMPILED_CACHE = CACHE_ROOT / "compiled"
COMPILED_CACHE_MB = 3072
_COMPILED_ENTRIES = 10_000

__all__ = [
    "COMPILED_CACHE",
    "Case",
    "Outcome",
    "find_opa",
    "load_cases",
    "main",
    "opa_source",
    "run_cases",
    "sample",
]


# -- finding OPA and its cases ---------------------------------------------------------------
def find_opa() -> Path:
    """The test bed's opa binary (found or built and cached)."""
    sys.path.insert(0, str(ROOT / "testbed"))
    from pkg_testbed.binaries import ensure  # noqa: PLC0415 - importable only after the insert

    return Path(ensure("opa"))


def opa_version(opa: Path) -> str:
    out = subprocess.run([str(opa), "version"], capture_output=True, text=True, check=True)
    match = re.search(r"^Version:\s*(\S+)", out.stdout, re.M)
    if not match:
        raise RuntimeError(f"cannot read the version from `{opa} version`: {out.stdout!r}")
    return match.group(1).lstrip("v")


def opa_source(version: str) -> Path:
    """The OPA module source of ``version``: the Go module cache, else ``go mod download``."""
    modcache = os.environ.get("GOMODCACHE") or str(Path.home() / "go" / "pkg" / "mod")
    # Without go on PATH, the default location is all there is to look at.
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        modcache = (
            subprocess.run(
                ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
            ).stdout.strip()
            or modcache
        )
    path = Path(modcache) / "github.com" / "open-policy-agent" / f"opa@v{version}"
    if (path / "v1" / "test" / "cases" / "testdata").is_dir():
        return path
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/open-policy-agent/opa@v{version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"OPA v{version}'s source is not in the Go module cache and `go mod download` "
            f"failed: {done.stderr.strip() or done.stdout.strip()}"
        )
    return Path(json.loads(done.stdout)["Dir"])


# -- YAML as OPA reads it (go-yaml: 1e3 is a number, no timestamps) ---------------------------
class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    k: [
        (tag, rx)
        for tag, rx in v
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# YAML 1.2 booleans only, as OPA reads its cases: `on`, `yes`, `off` stay strings.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _float(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if re.fullmatch(r"[-+]?[0-9]+", text):
        return int(text)
    try:
        return decimal.Decimal(text)
    except decimal.InvalidOperation:
        return float(text.replace(".", "", 1)) if "inf" in text.lower() else float("nan")


_Loader.add_constructor("tag:yaml.org,2002:float", _float)


@dataclasses.dataclass(frozen=True)
class Case:
    """One OPA test case: where it comes from and its YAML body."""

    rego_version: str  # "v0" or "v1"
    family: str  # the folder under testdata/<version>, e.g. "jwtbuiltins"
    file: str  # path below testdata
    note: str
    body: dict[str, Any]

    @property
    def ident(self) -> str:
        return f"{self.rego_version}/{self.note}"


def load_cases(source: Path) -> list[Case]:
    """Every case under testdata/{v0,v1}, in file and case order."""
    base = source / "v1" / "test" / "cases" / "testdata"
    cases: list[Case] = []
    for version in ("v0", "v1"):
        for path in sorted((base / version).rglob("*.yaml")):
            doc = yaml.load(path.read_text(), Loader=_Loader)
            family = path.relative_to(base / version).parts[0]
            for body in (doc or {}).get("cases") or []:
                cases.append(Case(version, family, str(path.relative_to(base)), body["note"], body))
    return cases


def load_exceptions(source: Path) -> dict[str, str]:
    path = source / "internal" / "wasm" / "sdk" / "test" / "e2e" / "exceptions.yaml"
    raw = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in raw.items()}


def _exception_reason(note: str, exceptions: dict[str, str]) -> str | None:
    if note in exceptions:
        return exceptions[note]
    for pattern, reason in exceptions.items():
        if "*" in pattern:
            rx = "".join("[^/]*" if c == "*" else re.escape(c) for c in pattern)
            if re.fullmatch(rx, note):
                return reason
    return None


def sample(cases: list[Case], per_family: int, seed: int) -> list[Case]:
    """A fixed sample: ``per_family`` cases of every family, chosen with ``seed``."""
    rng = random.Random(seed)
    by_family: dict[str, list[Case]] = collections.defaultdict(list)
    for case in cases:
        by_family[case.family].append(case)
    chosen: list[Case] = []
    for family in sorted(by_family):
        group = by_family[family]
        chosen.extend(rng.sample(group, min(per_family, len(group))))
    return chosen


# -- running --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one case."""

    ident: str
    family: str
    status: str  # pass | fail | skip
    reason: str = ""
    builtins: tuple[str, ...] = ()


def _missing_builtins(exc: Exception) -> tuple[str, ...]:
    for problem in getattr(exc, "problems", []):
        if problem.where == "builtins":
            match = re.search(r"does not provide: (.*?); ", problem.message)
            if match:
                return tuple(match.group(1).split(", "))
    return ()


def expectation_skip(case: Case) -> str | None:
    """Why OPA's own wasm harness cannot pass this case either (None: it can)."""
    body = case.body
    if "want_defined" in body or "want_result" in body:
        return None
    if body.get("strict_error"):
        return None
    code = body.get("want_error_code")
    if code is None:
        return "expects an error message without an error code, which OPA's wasm harness rejects"
    if code != "eval_conflict_error":
        return f"expects error code {code}, which OPA's wasm harness does not match"
    return None


def input_of(case: Case) -> tuple[bool, Any] | None:
    """(has an input, the input) from ``input`` or a JSON ``input_term``; None for a term only
    Rego reads (sets, trailing commas), which goes to the module as :func:`rego_term_text`."""
    if "input_term" not in case.body:
        return "input" in case.body, case.body.get("input")
    try:
        return True, json.loads(case.body["input_term"], parse_float=decimal.Decimal)
    except ValueError:
        return None


def rego_term_text(term: str) -> bytes:
    """A Rego term input as OPA's Go harness hands it to the module (``ast.Term.String()``,
    read by the module's own value parser, which knows sets and ``set()``): the text without
    the trailing commas Rego allows and OPA's value text does not."""
    out: list[str] = []
    i = 0
    while i < len(term):
        c = term[i]
        if c == '"':  # a string, escapes and all, is copied as it is
            j = i + 1
            while term[j] != '"':
                j += 2 if term[j] == "\\" else 1
            out.append(term[i : j + 1])
            i = j + 1
            continue
        if not (c == "," and re.match(r",\s*[}\]]", term[i:])):
            out.append(c)
        i += 1
    return "".join(out).encode()


@contextlib.contextmanager
def harness_builtins() -> Iterator[None]:
    """The test-only builtin OPA's harness declares (``test.sleep(duration)``, its
    addTestSleepBuiltin), provided to the engine while cases load and run, never beyond."""
    from evaluator_sidecar.policy.engines.wasm import builtins, gotime  # noqa: PLC0415

    def sleep(args: list[Any], _ctx: Any) -> None:
        # Go's harness ignores an unparsable duration (time.ParseDuration's error): no sleep.
        with contextlib.suppress(gotime.GoTimeError, TypeError, ValueError):
            time.sleep(max(0, gotime.parse_duration_ns(args[0])) / 1e9)

    builtins.PROVIDED["test.sleep"] = builtins.Builtin("test.sleep", 1, sleep)
    try:
        yield
    finally:
        del builtins.PROVIDED["test.sleep"]


def run_case(
    case: Case,
    built: Built,
    exceptions: dict[str, str],
    *,
    compiled_cache: Path | None = None,
) -> Outcome:
    """Load, evaluate and compare one case (the module is already built)."""
    from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits  # noqa: PLC0415
    from evaluator_sidecar.policy.errors import EvaluationError, SnapshotLoadError  # noqa: PLC0415

    def out(status: str, reason: str = "", builtins: tuple[str, ...] = ()) -> Outcome:
        return Outcome(case.ident, case.family, status, reason, builtins)

    reason = _exception_reason(case.note, exceptions)
    if reason is not None:
        return out("skip", f"in OPA's wasm exceptions list: {reason}")
    given = input_of(case)
    has_input, case_input = given or (True, None)
    text = rego_term_text(case.body["input_term"]) if given is None else None
    expect_skip = expectation_skip(case)
    if expect_skip:
        return out("skip", expect_skip)
    if built.wasm is None:
        return out("skip", build_skip_reason(built.error))
    env = case.body.get("env") or {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        try:
            engine = OpaWasm.load_from_bytes(
                built.wasm,
                data=to_plain(case.body.get("data") or {}),
                entrypoint=built.entrypoint,
                cache_dir=compiled_cache,
                limits=WasmLimits(deadline_ms=LIMITS_DEADLINE_MS),
            )
        except SnapshotLoadError as exc:
            missing = _missing_builtins(exc)
            if missing:
                return out("skip", f"refused builtin(s): {', '.join(missing)}", missing)
            return out("fail", f"load failed: {exc}")
        try:
            result, error = (
                engine.query(to_plain(case_input), has_input=has_input, input_text=text),
                None,
            )
        except EvaluationError as exc:
            result, error = None, str(exc)
        finally:
            engine.close()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return _judge(case, built.bindings(result or []), error, out)


def _judge(  # noqa: PLR0911 - one outcome per expectation
    case: Case, bindings: list[Any], error: str | None, out: Any
) -> Outcome:
    body = case.body
    if "want_defined" in body or "want_result" in body or body.get("strict_error"):
        if error is not None:
            return out("fail", f"unexpected error: {error[:300]}")
        if "want_defined" in body and "want_result" not in body:
            if bool(bindings) != bool(body["want_defined"]):
                return out(
                    "fail", f"expected defined={body['want_defined']}, got {short(bindings)}"
                )
            return out("pass")
        want = body.get("want_result") or []
        diff = compare_result_set(want, bindings, bool(body.get("sort_bindings")))
        return out("fail", diff) if diff else out("pass")
    if error is None:
        return out("fail", f"expected an error, got {short(bindings)}")
    if "var assignment conflict" in error or "object insert conflict" in error:
        return out("pass")
    return out("fail", f"expected a conflict error, got: {error[:300]}")


def _build_and_run(args: tuple[str, str, Case, dict[str, str], int, str]) -> Outcome:
    opa, version, case, exceptions, compiled_mb, compiled_dir = args
    try:
        built = build_case(Path(opa), version, case, CACHE_ROOT)
        cache = _compiled_cache_of_this_process(compiled_mb, Path(compiled_dir))
        with harness_builtins():
            return run_case(case, built, exceptions, compiled_cache=cache)
    except Exception as exc:  # noqa: BLE001 - one broken case must not stop the run; it is reported
        return Outcome(
            case.ident, case.family, "fail", f"runner error: {type(exc).__name__}: {exc}"
        )


@functools.cache
def _compiled_cache_of_this_process(max_mb: int, directory: Path) -> Path | None:
    """The compiled-module cache's directory with its bounds set (None: off)."""
    if max_mb <= 0:
        return None
    from evaluator_sidecar.policy.engines.wasm.cache import register_disk_cache  # noqa: PLC0415

    register_disk_cache(directory, max_entries=_COMPILED_ENTRIES, max_bytes=max_mb << 20)
    return directory


def run_cases(
    cases: Iterable[Case],
    *,
    opa: Path,
    version: str,
    source: Path,
    jobs: int | None = None,
    compiled_cache_mb: int = COMPILED_CACHE_MB,
    compiled_cache: Path = COMPILED_CACHE,
) -> list[Outcome]:
    """Build (cached), compile (cached) and run every case, a worker process per CPU."""
    exceptions = load_exceptions(source)
    work = [
        (str(opa), version, c, exceptions, compiled_cache_mb, str(compiled_cache)) for c in cases
    ]
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        return [_build_and_run(w) for w in work]
    # "spawn", never "fork": the parent may already have used wasmtime (the test suite
    # does), and a child forked from it can deadlock inside wasmtime's compiler on a lock
    # another thread held at the fork (seen as a CI run hanging in wasmtime_module_new).
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        return list(pool.map(_build_and_run, work, chunksize=8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=0, help="sample N cases per family")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--family", action="append", default=[], help="only these families")
    parser.add_argument("--json", type=Path, help="write every outcome to this file")
    parser.add_argument("--verbose-skips", action="store_true", help="list every skip")
    parser.add_argument(
        "--compiled-cache-mb",
        type=int,
        default=COMPILED_CACHE_MB,
        help=f"bound of the compiled-module cache in {COMPILED_CACHE} (0: compile every module)",
    )
    args = parser.parse_args(argv)
    # Aborts (conflicts) and instance rebuilds are expected outcomes here, not news.
    logging.getLogger("evaluator_sidecar").setLevel(logging.CRITICAL)
    opa = find_opa()
    version = opa_version(opa)
    source = opa_source(version)
    cases = load_cases(source)
    if args.family:
        cases = [c for c in cases if c.family in args.family]
    if args.per_family:
        cases = sample(cases, args.per_family, args.seed)
    jobs, mb = args.jobs or None, args.compiled_cache_mb
    outcomes = run_cases(
        cases, opa=opa, version=version, source=source, jobs=jobs, compiled_cache_mb=mb
    )
    print(f"OPA v{version} topdown cases ({source}): {len(outcomes)} run\n")
    print(table(outcomes))
    for line in _details(outcomes):
        print(line)
    if args.verbose_skips:
        for o in outcomes:
            if o.status == "skip":
                print(f"  skip {o.ident}: {o.reason}")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=1))
    return 1 if any(o.status == "fail" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())

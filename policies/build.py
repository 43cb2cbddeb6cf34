"""Build the repository's OPA policies to WebAssembly with the real ``opa build -t wasm``.

    .venv/bin/python policies/build.py            # rebuild every policy in policies.json
    .venv/bin/python policies/build.py --check    # rebuild into a temporary dir, compare

``opa`` comes from the test bed (``pkg_testbed.binaries.ensure("opa")``: PATH,
the binary cache, or a build from its Go module); ``--opa PATH`` overrides it.
``opa build`` is deterministic for a given OPA version (same bytes every run),
so ``--check`` compares bytes and exits 1 naming every policy whose committed
``.wasm`` is stale.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

POLICIES_DIR = Path(__file__).resolve().parent
ROOT = POLICIES_DIR.parent
MANIFEST = POLICIES_DIR / "policies.json"


@dataclass(frozen=True)
class PolicySpec:
    name: str
    sources: tuple[Path, ...]
    entrypoint: str
    wasm: Path


def load_manifest(path: Path = MANIFEST) -> list[PolicySpec]:
    """The policies listed in policies.json, with paths resolved under policies/."""
    raw = json.loads(path.read_text())
    return [
        PolicySpec(
            name=item["name"],
            sources=tuple(POLICIES_DIR / s for s in item["sources"]),
            entrypoint=item["entrypoint"],
            wasm=POLICIES_DIR / item["wasm"],
        )
        for item in raw["policies"]
    ]


def find_opa() -> Path:
    """The test bed's opa binary (found or built and cached)."""
    sys.path.insert(0, str(ROOT / "testbed"))
    from pkg_testbed.binaries import ensure  # noqa: PLC0415 - importable only after the path insert

    return ensure("opa")


def build(opa: Path, spec: PolicySpec) -> bytes:
    """``opa build -t wasm -e <entrypoint> <sources>`` and the bundle's /policy.wasm."""
    with tempfile.TemporaryDirectory(prefix="pkg-policy-") as tmp:
        bundle = Path(tmp) / "bundle.tar.gz"
        cmd = [
            str(opa),
            "build",
            "-t",
            "wasm",
            "-e",
            spec.entrypoint,
            "-o",
            str(bundle),
            # Relative to policies/: opa embeds the source paths in the module, and an
            # absolute path would make the build differ from one clone to the next.
            *(str(source.relative_to(POLICIES_DIR)) for source in spec.sources),
        ]
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=300, cwd=POLICIES_DIR
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr.strip()}"
            )
        with tarfile.open(fileobj=io.BytesIO(bundle.read_bytes()), mode="r:gz") as tar:
            member = tar.extractfile("/policy.wasm")
            if member is None:
                raise RuntimeError(f"the bundle built for {spec.name} has no /policy.wasm")
            return member.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare fresh builds with the committed .wasm"
    )
    parser.add_argument("--opa", type=Path, help="the opa binary to use (default: the test bed's)")
    args = parser.parse_args(argv)
    opa = args.opa or find_opa()
    stale = []
    for spec in load_manifest():
        wasm = build(opa, spec)
        if args.check:
            committed = spec.wasm.read_bytes() if spec.wasm.exists() else b""
            status = "ok" if committed == wasm else "STALE"
            if committed != wasm:
                stale.append(spec.name)
            print(f"{status:5} {spec.name}: {spec.wasm.relative_to(ROOT)}")
        else:
            spec.wasm.parent.mkdir(parents=True, exist_ok=True)
            spec.wasm.write_bytes(wasm)
            where = spec.wasm.relative_to(ROOT)
            print(f"built {spec.name}: {where} ({len(wasm)} bytes, entrypoint {spec.entrypoint})")
    if stale:
        print(
            f"stale: {', '.join(stale)}; run `make policies` and commit the .wasm files",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

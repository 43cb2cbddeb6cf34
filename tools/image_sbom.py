"""The image's SBOM: a CycloneDX 1.5 JSON document of the Python packages in its venv.

Read from the installed distributions' metadata (``*.dist-info``) of the venv at
``VENV`` (a folder of the unpacked image, not the running interpreter's), so it
names exactly what the image holds and needs no network and no SBOM tool::

    python tools/image_sbom.py ROOTFS/opt/pkg --name pkg-operator --version 0.1.0 \
        --created 2026-12-04T00:00:00Z > dist/pkg-operator-0.1.0.cdx.json

The document is deterministic: components sorted by name, the serial number
derived from their list, the timestamp given by the caller (the build's
SOURCE_DATE_EPOCH).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["components", "main", "sbom"]


def _site_packages(venv: Path) -> list[Path]:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"image_sbom: no lib/python3*/site-packages under {venv}")
    return found


def _license(dist: metadata.Distribution) -> list[dict[str, Any]]:
    expression = dist.metadata.get("License-Expression")
    if expression:
        return [{"expression": expression}]
    text = (dist.metadata.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 80:
        return [{"license": {"name": text}}]
    classifiers = [
        c.split("::")[-1].strip()
        for c in dist.metadata.get_all("Classifier") or []
        if c.startswith("License ::")
    ]
    return [{"license": {"name": name}} for name in classifiers]


def components(venv: Path) -> list[dict[str, Any]]:
    """One CycloneDX component per installed distribution in ``venv``, sorted by name."""
    out = []
    for dist in metadata.distributions(path=[str(p) for p in _site_packages(venv)]):
        name = dist.metadata["Name"]
        version = dist.version
        normalized = name.lower().replace("_", "-").replace(".", "-")
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": f"pkg:pypi/{normalized}@{version}",
            "name": name,
            "version": version,
            "purl": f"pkg:pypi/{normalized}@{version}",
        }
        licenses = _license(dist)
        if licenses:
            component["licenses"] = licenses
        out.append(component)
    return sorted(out, key=lambda c: (c["name"].lower(), c["version"]))


def sbom(venv: Path, *, name: str, version: str, created: str) -> dict[str, Any]:
    """The CycloneDX document for the image ``name``:``version`` whose venv is ``venv``."""
    parts = components(venv)
    digest = hashlib.sha256(json.dumps([name, version, parts], sort_keys=True).encode())
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.UUID(bytes=digest.digest()[:16], version=5)}",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{"type": "application", "name": "tools/image_sbom.py"}]},
            "component": {
                "type": "container",
                "bom-ref": f"{name}@{version}",
                "name": name,
                "version": version,
            },
        },
        "components": parts,
        "dependencies": [{"ref": f"{name}@{version}", "dependsOn": [c["bom-ref"] for c in parts]}],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path, help="the venv's folder inside the image's rootfs")
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--created", required=True, help="RFC 3339 time of the build")
    args = parser.parse_args(argv)
    document = sbom(args.venv, name=args.name, version=args.version, created=args.created)
    json.dump(document, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m pkg_testbed``: build the test bed's binaries, or run the stack for a person.

python -m pkg_testbed build [TOOL ...]   find or build etcd, kube-apiserver, kubectl, opa, helm
python -m pkg_testbed which TOOL         print the path of a tool (building it if needed)
python -m pkg_testbed up [--no-kube]     start the stack, print its environment, wait for Ctrl-C
python -m pkg_testbed demo [--keep]      the whole path on a fresh stack (make demo)
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from pkg_testbed.binaries import TOOLS, BinaryError, ensure
from pkg_testbed.procs import TestbedError
from pkg_testbed.stack import Stack
from pkg_testbed.system import lua51, postgres_bindir, redis_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pkg_testbed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "build", help="find or build the tools (and install PostgreSQL and Redis)"
    )
    build.add_argument(
        "tools", nargs="*", metavar="TOOL", help=f"any of {sorted(TOOLS)}; default all"
    )
    which = sub.add_parser("which", help="print a tool's path")
    which.add_argument("tool", choices=list(TOOLS))
    up = sub.add_parser("up", help="start the stack and wait")
    up.add_argument("--no-kube", action="store_true", help="only PostgreSQL and Redis")
    up.add_argument("--env-file", type=Path, help="also write the environment to this file")
    demo = sub.add_parser("demo", help="the whole path on a fresh stack (make demo)")
    demo.add_argument("--keep", action="store_true", help="keep the data and logs folder")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from pkg_testbed.demo import main as demo_main  # noqa: PLC0415 - loads the product

        return demo_main(keep=args.keep)
    try:
        if args.command == "build":
            for tool in args.tools or list(TOOLS):
                print(f"{tool}: {ensure(tool)}")
            if not args.tools:
                # The servers that come from Debian's packages rather than Go modules.
                print(f"postgres: {postgres_bindir()}")
                print(f"redis-server: {redis_server()}")
                print(f"lua5.1: {lua51()}")  # runs Argo CD's health Lua in the tests
        elif args.command == "which":
            print(ensure(args.tool))
        else:
            return _up(no_kube=args.no_kube, env_file=args.env_file)
    except (BinaryError, TestbedError) as exc:
        print(f"pkg_testbed: {exc}", file=sys.stderr)
        return 1
    return 0


def _up(*, no_kube: bool, env_file: Path | None) -> int:
    stack = Stack(Path(tempfile.mkdtemp(prefix="pkg-stack-")))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    started = time.monotonic()
    stack.start(kube=not no_kube)
    try:
        lines = [f"export {key}={shlex.quote(value)}" for key, value in stack.env().items()]
        if env_file is not None:
            env_file.write_text("\n".join(lines) + "\n")
        print(
            f"# test bed up in {time.monotonic() - started:.1f}s; data and logs in {stack.workdir}"
        )
        print("# paste these lines into a shell to use it; Ctrl-C stops everything")
        print("\n".join(lines), flush=True)
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("# test bed stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

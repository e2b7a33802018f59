"""``python -m core <command> [--json]``.

Each command lives in ``core/commands/<name>.py`` with ``add_arguments(parser)``
and ``run(args) -> dict``. With ``--json`` the result is one JSON object on
stdout; without it, a readable summary. Logs go to stderr. A failure exits
non-zero; with ``--json`` its message is in the ``error`` key.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from core.errors import SparseLabError

COMMANDS = {
    "env": "core.commands.env",
    "runs": "core.commands.runs",
    "jobs": "core.commands.jobs",
    "store": "core.commands.store",
    "load": "core.commands.load",
    "prune": "core.commands.prune",
    "sensitivity": "core.commands.sensitivity",
    "tflite": "core.commands.tflite",
    "tflite-inspect": "core.commands.tflite_inspect",
    "tvm": "core.commands.tvm",
    "whatif": "core.commands.whatif",
    "peers": "core.commands.peers",
    "demo": "core.commands.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__)
        command.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def _print_human(result: dict, indent: str = "") -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_human(value, indent + "  ")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{indent}{key}:")
            for item in value:
                print(indent + "  - " + ", ".join(f"{k}={v}" for k, v in item.items()))
        else:
            print(f"{indent}{key}: {value}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except SparseLabError as exc:
        return _fail(args, str(exc))
    except KeyboardInterrupt:
        return _fail(args, "interrupted")
    except Exception as exc:  # unexpected: still one JSON object, with the traceback on stderr
        logging.exception("command failed")
        return _fail(args, f"{type(exc).__name__}: {exc}")
    if args.json:
        json.dump(result, sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        _print_human(result)
    return 0


def _fail(args, message: str) -> int:
    if args.json:
        json.dump({"error": message}, sys.stdout)
        sys.stdout.write("\n")
    print(f"error: {message}", file=sys.stderr)
    return 1

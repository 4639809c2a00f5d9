"""The ``gatewatch`` console script.

Each subcommand lives in its own module under ``gatewatch.commands`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported lazily so that ``gatewatch replay`` does not pay for Faust or Slack imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, str] = {
    "replay": "gatewatch.commands.replay",
    "demo": "gatewatch.commands.demo",
    "simulate": "gatewatch.commands.simulate",
    "nab": "gatewatch.commands.nab",
    "worker": "gatewatch.commands.worker",
    "tail": "gatewatch.commands.tail",
    "silence": "gatewatch.commands.silence",
    "incidents": "gatewatch.commands.incidents",
    "deliver": "gatewatch.commands.deliver",
    "bench": "gatewatch.commands.bench",
    "tune": "gatewatch.commands.tune",
    "explain": "gatewatch.commands.explain",
}

# One-line descriptions, kept here so `gatewatch --help` does not import every module.
SUMMARIES: dict[str, str] = {
    "replay": "run the detection pipeline over historic log files, without Kafka",
    "demo": "simulate a day of gateway traffic with incidents, replay it, print the incidents",
    "simulate": "generate realistic gateway traffic with labelled incidents in the real formats",
    "nab": "run the univariate online detector over NAB-format CSVs",
    "worker": "the always-on service: a Faust worker over Kafka",
    "tail": "tail one live source into its Kafka topic",
    "silence": "add, list or expire silences",
    "incidents": "list recent incidents and their notification timeline",
    "deliver": "deliver a notifications file to Slack/webhooks through the durable outbox",
    "bench": "measure throughput, latency and memory; print a table",
    "tune": "replay historic logs under each setting of a sweep, score against labelled incidents, rank",
    "explain": "explain one incident: its alerts, evidence, baseline and contributors",
}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse exits with 2 on bad arguments, which is what CONTRACT §1 asks for."""


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="gatewatch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="gatewatch 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if name in sys.argv[1:2]:  # only import the module of the command being run
            module = importlib.import_module(module_name)
            p = sub.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(p)
            p.set_defaults(_module=module)
        else:
            sub.add_parser(name, help=SUMMARIES[name], add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args()
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 2
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

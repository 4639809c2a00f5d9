"""``gatewatch replay``: the detection pipeline over historic files, without Kafka."""

from __future__ import annotations

import argparse
import os
import sys

from gatewatch.config import ConfigError, load_config
from models.pipeline import build_engine

HELP = "run the detection pipeline over historic log files, without Kafka (CONTRACT §1)"


def speed_arg(text: str) -> float | None:
    if text == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--speed takes 'max' or a number of log seconds per second") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("--speed must be positive")
    return v


def jobs_arg(text: str) -> int:
    if text == "auto":
        return max(os.cpu_count() or 1, 1)
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--jobs takes a number of processes or 'auto'") from None
    if n < 1:
        raise argparse.ArgumentTypeError("--jobs must be at least 1")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help=".ndjson or .ndjson.gz files, any source, any mix")
    p.add_argument("--out", required=True, metavar="NOTIFS.ndjson", help="where the notifications go ('-' = stdout)")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: $GATEWATCH_CONFIG or built-in)")
    p.add_argument("--speed", type=speed_arg, default=None, metavar="max|N",
                   help="'max' (default) or N log seconds per wall-clock second")
    p.add_argument("--rejects", metavar="FILE", help="keep every rejected line here with its reason (NDJSON)")
    p.add_argument("--no-models", action="store_true", help="rules only: switch the online anomaly models off")
    p.add_argument("--no-rules", action="store_true", help="models only: switch the threshold rules off")
    p.add_argument("--report", metavar="REPORT.html",
                   help="also write one self-contained HTML report: timeline, incidents with their metrics, "
                        "busiest series (opens offline)")
    p.add_argument("--labels", metavar="LABELS",
                   help="with --report: labelled incidents (labels.json or YAML) to mark caught and missed")
    p.add_argument("--jobs", type=jobs_arg, default=1, metavar="N",
                   help="read the files in N processes while this one detects (default 1: all in one; "
                        "'auto': one per core). Not with --speed")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def check_inputs(files: list[str]) -> str | None:
    for path in files:
        if not os.path.isfile(path):
            return f"gatewatch replay: {path}: no such file"
        if not os.access(path, os.R_OK):
            return f"gatewatch replay: {path}: permission denied"
    return None


def run(args: argparse.Namespace) -> int:
    from gatewatch.replay import NotificationTap, replay

    problem = check_inputs(args.files)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"gatewatch replay: {e}", file=sys.stderr)
        return 2
    labels = None
    if args.labels:
        from gatewatch.commands.tune import load_labels

        try:
            labels = load_labels(args.labels)
        except (OSError, ValueError) as e:
            print(f"gatewatch replay: --labels {args.labels}: {e}", file=sys.stderr)
            return 2
    engine = build_engine(config, args.no_models, args.no_rules)
    if args.report:
        from models.recorder import SeriesRecorder

        engine.recorder = SeriesRecorder()
    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
    if args.report:
        out = NotificationTap(out)
    rejects = open(args.rejects, "wb") if args.rejects else None
    try:
        summary = replay(args.files, out, engine=engine, rejects=rejects, speed=args.speed,
                         progress=not args.quiet and sys.stderr.isatty(), jobs=args.jobs)
    finally:
        if args.out != "-":
            out.close()
        if rejects:
            rejects.close()
    if not args.quiet:
        for line in summary.lines():
            print(line, file=sys.stderr if args.out == "-" else sys.stdout)
    if args.report:
        write_report(args, config, engine, out.notifications(), summary, labels)
    return 0


def write_report(args, config, engine, notifications, summary, labels) -> None:
    from gatewatch.report import render_report

    fire_score = None
    for det in engine.extra_detectors:
        fire_score = getattr(det, "fire_score", fire_score)
    page = render_report(notifications, engine.recorder.export(), summary.lines(), args.files,
                         raw_config=config.raw, labels=labels, fire_score=fire_score)
    with open(args.report, "w", encoding="utf-8") as f:
        f.write(page)
    if not args.quiet:
        print(f"report:        {args.report}", file=sys.stderr if args.out == "-" else sys.stdout)

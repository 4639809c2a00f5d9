"""``gatewatch silence add|list|expire``: silences stored in the state directory.

    gatewatch silence add provider=openai 'team=~prod.*' --duration 2h --comment "OpenAI incident"
    gatewatch silence list [--all]
    gatewatch silence expire ID

A running worker or ``gatewatch deliver`` reads them on every notification.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from datetime import datetime, timedelta, timezone

from connectors.outbox import FileStateStore
from gatewatch.commands.deliver import SILENCES_STATE, stored_silences
from gatewatch.settings import load_settings
from models.silences import Silence, parse_matcher, parse_time

HELP = "add, list or expire silences (label matchers =, !=, =~, !~ with a time range)"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 30m, 2h, 1d12h)")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state-dir", default=argparse.SUPPRESS,
                       help="state directory (default GATEWATCH_STATE_DIR or .gatewatch)")
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="add a silence", parents=[state])
    add.add_argument("matchers", nargs="+",
                     help="label matchers: name=value, name!=value, name=~re, name!~re")
    add.add_argument("--duration", type=parse_duration, default=parse_duration("1h"), help="default 1h")
    add.add_argument("--starts", type=parse_time, help="ISO time (default now)")
    add.add_argument("--ends", type=parse_time, help="ISO time (overrides --duration)")
    add.add_argument("--comment", default="")
    add.add_argument("--by", default="", help="who created it")
    ls = sub.add_parser("list", help="list active and pending silences", parents=[state])
    ls.add_argument("--all", action="store_true", help="include expired ones")
    expire = sub.add_parser("expire", help="end a silence now", parents=[state])
    expire.add_argument("id")


def _add(args: argparse.Namespace, store: FileStateStore, now: datetime) -> int:
    starts = args.starts or now
    silence = Silence(id=secrets.token_hex(4), matchers=tuple(parse_matcher(m) for m in args.matchers),
                      starts_at=starts, ends_at=args.ends or starts + args.duration,
                      created_by=args.by, comment=args.comment)
    if silence.ends_at <= silence.starts_at:
        print("gatewatch silence: ends before it starts", file=sys.stderr)
        return 2
    store.put(SILENCES_STATE, [s.to_dict() for s in stored_silences(store)] + [silence.to_dict()])
    print(silence.id)
    return 0


def _list(args: argparse.Namespace, store: FileStateStore, now: datetime) -> int:
    for s in stored_silences(store):
        if args.all or s.ends_at > now:
            state = "active" if s.active(now) else ("expired" if s.ends_at <= now else "pending")
            matchers = " ".join(str(m) for m in s.matchers)
            print(f"{s.id}  {state:<8} {s.starts_at.isoformat()} → {s.ends_at.isoformat()}  {matchers}"
                  f"{'  # ' + s.comment if s.comment else ''}")
    return 0


def _expire(args: argparse.Namespace, store: FileStateStore, now: datetime) -> int:
    silences = stored_silences(store)
    if not any(s.id == args.id for s in silences):
        print(f"gatewatch silence: no silence {args.id!r}", file=sys.stderr)
        return 1
    updated = [Silence(s.id, s.matchers, s.starts_at, min(s.ends_at, now), s.created_by, s.comment)
               if s.id == args.id else s for s in silences]
    store.put(SILENCES_STATE, [s.to_dict() for s in updated])
    return 0


def run(args: argparse.Namespace) -> int:
    store = FileStateStore(args.state_dir or load_settings().state_dir)
    now = datetime.now(timezone.utc)
    try:
        return {"add": _add, "list": _list, "expire": _expire}[args.action](args, store, now)
    except ValueError as exc:
        print(f"gatewatch silence: {exc}", file=sys.stderr)
        return 2

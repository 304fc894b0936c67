"""Command line: check / plan / apply / revert."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from . import apply as applymod
from .check import render_text, run_checks, summarize
from .config import ConfigError, resolve_workers
from .host import FixtureRunner, Host, SubprocessRunner
from .plan import CATEGORIES, DEFAULT_PPS, build_plan, render_plan


def _cats(text: Optional[str]) -> Optional[List[str]]:
    if not text:
        return None
    cats = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in cats if c not in CATEGORIES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown categor{'y' if len(bad) == 1 else 'ies'} "
                                         f"{','.join(bad)} (known: {','.join(CATEGORIES)})")
    return cats


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default="/", help="read /proc and /sys under this directory (default /)")
    common.add_argument("--cmd-fixtures", metavar="DIR",
                        help="answer external commands (ethtool...) from files in DIR instead of running them (testing)")
    common.add_argument("--iface", help="NIC to check/tune (lo/veth only when named here)")
    common.add_argument("--workers", metavar="LIST", help='worker cores in worker order, e.g. "2-5" or "2,3,4,5"')
    common.add_argument("--config", metavar="FILE", help="read workers from the [dataplane] table of this TOML file")
    common.add_argument("--pps", type=int, default=DEFAULT_PPS,
                        help=f"expected packets/s through the dataplane, for buffer sizing (default {DEFAULT_PPS})")

    planopts = argparse.ArgumentParser(add_help=False)
    planopts.add_argument("--busy-poll", type=int, metavar="USEC",
                          help="also set net.core.busy_poll/busy_read to USEC (off unless given)")
    planopts.add_argument("--only", type=_cats, metavar="CATS",
                          help="only these steps: " + ",".join(CATEGORIES))
    planopts.add_argument("--skip", type=_cats, metavar="CATS", help="leave out these steps")

    p = argparse.ArgumentParser(prog="sluice-tune", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", parents=[common], help="is this host ready? one line per item")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser("plan", parents=[common, planopts], help="print the tuning commands as a shell script")
    a = sub.add_parser("apply", parents=[common, planopts], help="apply the plan (dry run unless --yes)")
    g = a.add_mutually_exclusive_group()
    g.add_argument("--dry-run", action="store_true", default=True, help="show what would change (default)")
    g.add_argument("--yes", action="store_true", help="really apply (needs root)")
    a.add_argument("--state", default=applymod.DEFAULT_STATE, help=f"state file (default {applymod.DEFAULT_STATE})")
    r = sub.add_parser("revert", parents=[common], help="restore what apply saved")
    r.add_argument("--state", default=applymod.DEFAULT_STATE, help=f"state file (default {applymod.DEFAULT_STATE})")
    return p


def make_host(args) -> Host:
    runner = FixtureRunner(args.cmd_fixtures, default_ok=True) if args.cmd_fixtures else SubprocessRunner()
    return Host(root=args.root, runner=runner)


def main(argv: Optional[List[str]] = None, out=None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    host = make_host(args)
    try:
        workers = resolve_workers(args.workers, args.config)
    except ConfigError as exc:
        print(f"sluice-tune: {exc}", file=sys.stderr)
        return 2
    emit = lambda s: print(s, file=out)

    if args.cmd == "check":
        items = run_checks(host, args.iface, workers, args.pps)
        if args.json:
            emit(json.dumps({"items": [i.to_json() for i in items], "summary": summarize(items)}, indent=2))
        else:
            out.write(render_text(items))
        s = summarize(items)
        return 2 if s["fail"] else 0

    if args.cmd == "revert":
        res = applymod.revert(host, args.state, log=emit)
        return 1 if any(r.status == "failed" for r in res) else 0

    if not workers:
        print("sluice-tune: plan/apply need --workers LIST or --config FILE", file=sys.stderr)
        return 2

    def make_plan():
        return build_plan(host, args.iface, workers, args.pps, args.busy_poll, args.only, args.skip)

    if args.cmd == "plan":
        out.write(render_plan(make_plan()))
        return 0

    if args.yes and os.geteuid() != 0 and args.root == "/":
        print("sluice-tune: apply --yes needs root", file=sys.stderr)
        return 2
    res = applymod.apply(host, make_plan, args.state, args.yes, log=emit)
    if args.yes:
        plan = make_plan()
        emit(f"dataplane worker order: {plan.workers_line()}")
    return 1 if any(r.status == "failed" for r in res) else 0

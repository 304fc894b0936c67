"""`apply` and `revert`.

apply: dry run unless yes=True.  Items already in the wanted state are
skipped (idempotent).  Before anything changes, the previous value of each
item about to change is saved to the state file; an existing state file is
merged, keeping the oldest saved value, so apply twice + revert still gets
back to the state before the first apply.  Failures are reported per item."""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from .host import Host
from .plan import Action, Plan, same

DEFAULT_STATE = "/var/lib/sluice/tune-state.json"
FIRST_PHASE = ("irqbalance", "channels")


@dataclass
class Result:
    key: str
    status: str      # ok (already) | would-change | changed | failed | restored
    detail: str

    def line(self) -> str:
        return f"{self.status:<12}  {self.key}  {self.detail}"


def load_state(path: str) -> Dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict) and isinstance(data.get("entries"), list):
            return data
    except (OSError, ValueError):
        pass
    return {"version": 1, "entries": []}


def save_state(path: str, state: Dict) -> None:
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _entry(a: Action) -> Dict:
    if a.kind == "file":
        return {"key": a.key, "kind": "file", "path": a.path, "old": a.current,
                "new": a.value, "compare": a.compare}
    return {"key": a.key, "kind": "cmd", "old": a.current,
            "revert_argv": a.revert_argv, "argv": a.argv}


def _do(host: Host, a: Action) -> Result:
    if a.kind == "file":
        if a.current is None:
            return Result(a.key, "failed", f"{a.path} not readable")
        if not host.writable(a.path):
            return Result(a.key, "failed", f"{a.path} is read-only here")
        try:
            host.write(a.path, a.value)
        except OSError as exc:
            return Result(a.key, "failed", f"write {a.value!r} to {a.path}: {exc.strerror or exc}")
        now = host.read(a.path)
        if now is not None and not same(a.compare, now.strip(), a.value):
            return Result(a.key, "failed", f"{a.path} reads {now.strip()!r} after writing {a.value!r}")
        return Result(a.key, "changed", f"{a.path}: {a.current} -> {a.value}")
    for argv in a.argv:
        r = host.run(argv)
        if not r.ok:
            msg = (r.err or r.out).strip().splitlines()
            return Result(a.key, "failed", f"{shlex.join(argv)}: rc {r.rc}" + (f": {msg[-1]}" if msg else ""))
    return Result(a.key, "changed", f"{a.current} -> {'; '.join(shlex.join(x) for x in a.argv)}")


def apply(host: Host, make_plan: Callable[[], Plan], state_path: str, yes: bool,
          log: Callable[[str], None] = print) -> List[Result]:
    plan = make_plan()
    results: List[Result] = []
    if not yes:
        for a in plan.actions:
            if a.satisfied:
                results.append(Result(a.key, "ok", f"already: {a.current}"))
            else:
                results.append(Result(a.key, "would-change",
                                      f"{a.current} -> {a.value if a.kind == 'file' else '; '.join(a.shell)}"))
        for r in results:
            log(r.line())
        log("dry run: nothing changed (use --yes to apply)")
        return results

    state = load_state(state_path)
    state.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    state["iface"] = plan.iface
    state["workers"] = plan.workers
    known = {e["key"] for e in state["entries"]}

    def run_phase(actions: List[Action]) -> bool:
        todo = [a for a in actions if not a.satisfied]
        for a in actions:
            if a.satisfied:
                results.append(Result(a.key, "ok", f"already: {a.current}"))
                log(results[-1].line())
        new = [_entry(a) for a in todo if a.key not in known]
        new_keys = {e["key"] for e in new}
        if new:
            state["entries"].extend(new)
            known.update(new_keys)
            save_state(state_path, state)      # previous state saved before any change
        changed = False
        for a in todo:
            r = _do(host, a)
            if r.status == "failed" and a.key in new_keys:
                # nothing changed, so nothing to revert for this item
                state["entries"] = [e for e in state["entries"] if e["key"] != a.key]
                known.discard(a.key)
            elif r.status != "failed":
                changed = True
            results.append(r)
            log(r.line())
        save_state(state_path, state)
        return changed

    first = [a for a in plan.actions if a.category in FIRST_PHASE]
    if run_phase(first):
        plan = make_plan()     # queue count / IRQ numbers may have changed
    run_phase([a for a in plan.actions if a.category not in FIRST_PHASE])
    n_fail = sum(1 for r in results if r.status == "failed")
    n_chg = sum(1 for r in results if r.status == "changed")
    log(f"applied: {n_chg} changed, {len(results) - n_chg - n_fail} already ok, {n_fail} failed; "
        f"state in {state_path}")
    if not state["entries"] and os.path.exists(state_path):
        os.remove(state_path)
    return results


def revert(host: Host, state_path: str, log: Callable[[str], None] = print) -> List[Result]:
    state = load_state(state_path)
    results: List[Result] = []
    if not state["entries"]:
        log(f"nothing to revert ({state_path} missing or empty)")
        return results
    left = []
    for e in reversed(state["entries"]):
        key = e["key"]
        if e["kind"] == "file":
            cur = host.read(e["path"])
            # restore the exact old value ("at least" would accept the raised one)
            cmp = {"atleast": "int", "udp_mem": "str"}.get(e.get("compare", "str"), e.get("compare", "str"))
            if cur is not None and same(cmp, cur.strip(), e["old"] or ""):
                results.append(Result(key, "ok", f"already {e['old']}"))
            else:
                try:
                    host.write(e["path"], e["old"])
                    results.append(Result(key, "restored", f"{e['path']} = {e['old']}"))
                except OSError as exc:
                    results.append(Result(key, "failed", f"{e['path']}: {exc.strerror or exc}"))
                    left.append(e)
        else:
            err = None
            for argv in e.get("revert_argv") or []:
                r = host.run(argv)
                if not r.ok:
                    err = f"{shlex.join(argv)}: rc {r.rc}: {(r.err or r.out).strip()[:200]}"
                    break
            if err:
                results.append(Result(key, "failed", err))
                left.append(e)
            else:
                results.append(Result(key, "restored", f"{e.get('old')} ({'; '.join(shlex.join(a) for a in e.get('revert_argv') or [])})"))
        log(results[-1].line())
    if left:
        state["entries"] = list(reversed(left))
        save_state(state_path, state)
        log(f"revert incomplete: {len(left)} item(s) kept in {state_path}")
    else:
        os.remove(state_path)
        log(f"reverted {len(results)} item(s); removed {state_path}")
    return results

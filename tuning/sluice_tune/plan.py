"""Build the tuning plan: a list of Actions, each with the exact shell command,
what it does, why, and how to verify it.  The same Actions drive `apply`."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import nic as nicmod
from . import parsers
from .cpus import format_cpulist, format_mask, parse_cpulist, parse_mask
from .host import Host

# Order matters: irqbalance must be stopped before IRQs are pinned, channels
# must be set before the per-queue steps (IRQ numbers/queue dirs can change).
CATEGORIES = ("irqbalance", "channels", "rings", "rss", "offload", "irq",
              "other-irqs", "xps", "rps", "sysctl", "governor")
# Categories that only touch the chosen interface or per-netns sysctls.
LOCAL_CATEGORIES = ("channels", "rings", "rss", "offload", "irq", "xps", "rps", "sysctl")

DEFAULT_PPS = 1_000_000
TRUESIZE = 2304          # kernel memory charged per ~1200-byte RTP packet (skb + data)
RX_RING_TARGET = 4096


@dataclass
class Action:
    key: str
    category: str
    what: str
    why: str
    verify: str
    kind: str                       # "file" or "cmd"
    shell: List[str]                # exact shell command(s)
    path: Optional[str] = None      # file actions: absolute path (under --root when applied)
    value: Optional[str] = None     # file actions: value to write
    compare: str = "str"            # str | int | atleast | cpulist | mask | udp_mem
    current: Optional[str] = None   # state read at plan time (None: unknown)
    argv: List[List[str]] = field(default_factory=list)         # cmd actions
    revert_argv: List[List[str]] = field(default_factory=list)  # cmd actions
    satisfied: bool = False

    def to_json(self) -> Dict:
        return {k: getattr(self, k) for k in (
            "key", "category", "what", "why", "verify", "kind", "shell", "path",
            "value", "current", "satisfied")}


@dataclass
class Plan:
    iface: Optional[str]
    workers: List[int]
    queues: int                               # queues after the plan (K)
    queue_core: List[int]                     # queue i -> core
    actions: List[Action] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def workers_line(self) -> str:
        order = self.queue_core + [w for w in self.workers if w not in self.queue_core]
        return f'workers = "{",".join(str(c) for c in order)}"'


def same(compare: str, current: Optional[str], wanted: str) -> bool:
    if current is None:
        return False
    cur, want = current.strip(), wanted.strip()
    try:
        if compare == "cpulist":
            return parse_cpulist(cur) == parse_cpulist(want)
        if compare == "mask":
            return parse_mask(cur) == parse_mask(want)
        if compare == "int":
            return int(cur) == int(want)
        if compare == "atleast":
            return int(cur) >= int(want)
        if compare == "udp_mem":
            c = [int(x) for x in cur.split()]
            w = [int(x) for x in want.split()]
            return len(c) == 3 and all(a >= b for a, b in zip(c, w))
    except ValueError:
        return False
    return cur.split() == want.split()


def _pow2(n: float) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


def sysctl_targets(pps: int, queues: int, busy_poll: Optional[int] = None) -> Dict[str, str]:
    """Socket-buffer sysctls sized for `pps` packets/s spread over `queues` workers.

    rmem/wmem_max: one worker socket must absorb ~50 ms of its share of the
    traffic (a worker stalled by a page fault, a long batch or a preemption)
    at ~2.3 KB of charged memory per packet; rounded to a power of two,
    between 8 MiB and 512 MiB.  netdev_max_backlog: 10 ms of per-core packets,
    at least 4096.  udp_mem (pages): room for every worker buffer full twice
    over.  udp_rmem_min/udp_wmem_min: a socket keeps a few packets of
    headroom even under global UDP memory pressure."""
    per_core = pps / max(1, queues)
    buf = min(max(_pow2(per_core * 0.050 * TRUESIZE), 8 << 20), 512 << 20)
    backlog = min(max(_pow2(per_core * 0.010), 4096), 1 << 20)
    udp_max = _pow2(2 * 2 * buf * max(1, queues) / 4096)
    t = {
        "net.core.rmem_max": str(buf),
        "net.core.wmem_max": str(buf),
        "net.core.netdev_max_backlog": str(backlog),
        "net.ipv4.udp_mem": f"{udp_max // 2} {udp_max * 3 // 4} {udp_max}",
        "net.ipv4.udp_rmem_min": "16384",
        "net.ipv4.udp_wmem_min": "16384",
    }
    if busy_poll is not None:
        t["net.core.busy_poll"] = str(busy_poll)
        t["net.core.busy_read"] = str(busy_poll)
    return t


SYSCTL_WHY = {
    "net.core.rmem_max": "cap for SO_RCVBUF; the dataplane asks for a large receive buffer per worker socket so bursts are queued, not dropped (UDP RcvbufErrors)",
    "net.core.wmem_max": "cap for SO_SNDBUF; an SFU sends N copies of each packet, so egress bursts are bigger than ingress ones",
    "net.core.netdev_max_backlog": "per-CPU backlog queue used by RPS/veth/tunnels; too small drops packets under bursts (softnet_stat column 2)",
    "net.ipv4.udp_mem": "global UDP memory limit in pages; when exceeded every UDP socket is squeezed to udp_rmem_min",
    "net.ipv4.udp_rmem_min": "receive space a UDP socket keeps even under memory pressure",
    "net.ipv4.udp_wmem_min": "send space a UDP socket keeps even under memory pressure",
    "net.core.busy_poll": "µs to busy-poll the NIC queue in poll/epoll; trades CPU for latency (optional)",
    "net.core.busy_read": "µs to busy-poll on blocking reads (optional)",
}


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def _file_action(host: Host, key, category, path, value, compare, what, why,
                 verify_expect, shell=None) -> Action:
    cur = host.read(path)
    cur = cur.strip() if cur is not None else None
    a = Action(key=key, category=category, what=what, why=why,
               verify=f"cat {path}   # expect {verify_expect}", kind="file",
               shell=shell or [f"echo {shlex.quote(value)} > {path}"],
               path=path, value=value, compare=compare, current=cur)
    a.satisfied = same(compare, cur, value)
    return a


def build_plan(host: Host, iface: Optional[str], workers: List[int],
               pps: int = DEFAULT_PPS, busy_poll: Optional[int] = None,
               only: Optional[List[str]] = None, skip: Optional[List[str]] = None) -> Plan:
    wanted_cats = [c for c in CATEGORIES
                   if (not only or c in only) and (not skip or c not in skip)]
    if not iface:
        iface = nicmod.default_route_iface(host)
        if iface and not nicmod.is_physical(host, iface):
            iface = None
        if not iface:
            nics = nicmod.pick_nics(host, None)
            iface = nics[0] if nics else None
    interrupts = parsers.parse_interrupts(host.read("/proc/interrupts") or "")
    notes: List[str] = []
    actions: List[Action] = []
    n = None
    if iface and host.exists(f"/sys/class/net/{iface}"):
        n = nicmod.discover(host, iface, interrupts)
    elif iface:
        notes.append(f"interface {iface} not found: NIC steps skipped")
    else:
        notes.append("no NIC found (give --iface): NIC steps skipped")

    # ---- how many queues will there be (K) -----------------------------
    want_k = len(workers)
    k = want_k
    chan_action = None
    if n:
        maxq = n.max_queues()
        cur_k = n.queue_count()
        if n.channels and maxq:
            k = min(want_k, maxq)
            if k < want_k:
                notes.append(f"{iface} supports only {maxq} queues for {want_k} workers: "
                             f"workers {format_cpulist(workers[k:])} get no RX queue of their own")
            combined = (n.channels.max.get("combined") or 0) > 0
            c = n.channels.current
            if combined:
                cur_txt = f"combined {c.get('combined') or 0}"
                argv = ["ethtool", "-L", iface, "combined", str(k)]
                rev = ["ethtool", "-L", iface, "combined", str(c.get("combined") or 0)]
                done = (c.get("combined") or 0) == k and not (c.get("rx") or 0)
            else:
                cur_txt = f"rx {c.get('rx') or 0} tx {c.get('tx') or 0}"
                argv = ["ethtool", "-L", iface, "rx", str(k), "tx", str(k)]
                rev = ["ethtool", "-L", iface, "rx", str(c.get("rx") or 0),
                       "tx", str(c.get("tx") or 0)]
                done = (c.get("rx") or 0) == k and (c.get("tx") or 0) == k
            chan_action = Action(
                key=f"channels:{iface}", category="channels",
                what=f"{iface}: {k} queue(s), one per worker core (now {cur_txt})",
                why="each worker core owns exactly one RX queue: its interrupts, its softirq work and its socket stay on one core, no cross-core cache traffic",
                verify=f"ethtool -l {iface}   # 'Current hardware settings' shows {k}",
                kind="cmd", shell=[shlex.join(argv)], argv=[argv], revert_argv=[rev],
                current=cur_txt, satisfied=done)
        else:
            k = min(want_k, n.rx_queues) if n.rx_queues else want_k
            notes.append(f"cannot read/change channel counts of {iface} "
                         f"({'ethtool missing' if not host.has_tool('ethtool') else 'ethtool -l unsupported'}); "
                         f"using the {n.rx_queues} RX queue(s) it has")
            if n.rx_queues and n.rx_queues < want_k:
                k = n.rx_queues
        if chan_action is None and cur_k and cur_k < k:
            k = cur_k
    queue_core = workers[:k]

    def add(a: Optional[Action]):
        if a and a.category in wanted_cats:
            actions.append(a)

    # ---- irqbalance ------------------------------------------------------
    if "irqbalance" in wanted_cats:
        running = host.process_running("irqbalance")
        actions.append(Action(
            key="irqbalance", category="irqbalance",
            what="stop and disable irqbalance" + ("" if running else " (not running)"),
            why="irqbalance periodically rewrites smp_affinity and would undo the queue->core pinning; "
                "alternative: keep it and set IRQBALANCE_BANNED_CPULIST=" + format_cpulist(workers) +
                " in /etc/default/irqbalance (it still moves the NIC queue IRQs though)",
            verify="pgrep -x irqbalance || echo stopped", kind="cmd",
            shell=["systemctl stop irqbalance", "systemctl disable irqbalance"],
            argv=[["systemctl", "stop", "irqbalance"], ["systemctl", "disable", "irqbalance"]],
            revert_argv=[["systemctl", "enable", "irqbalance"], ["systemctl", "start", "irqbalance"]],
            current="running" if running else "stopped", satisfied=not running))
    add(chan_action)

    if n:
        # ---- rings -------------------------------------------------------
        r = host.run(["ethtool", "-g", iface]) if "rings" in wanted_cats else None
        rings = parsers.parse_rings(r.out) if r is not None and r.ok else None
        if rings and rings["max"].get("rx"):
            target = min(rings["max"]["rx"], RX_RING_TARGET)
            cur = rings["current"].get("rx") or 0
            if cur < target:
                argv = ["ethtool", "-G", iface, "rx", str(target)]
                add(Action(key=f"rings:{iface}", category="rings",
                           what=f"{iface}: RX ring {cur} -> {target} descriptors",
                           why="a bigger RX ring absorbs microbursts (simulcast keyframes) while the worker is busy; drops show as rx_missed/rx_no_buffer",
                           verify=f"ethtool -g {iface}", kind="cmd", shell=[shlex.join(argv)],
                           argv=[argv], revert_argv=[["ethtool", "-G", iface, "rx", str(cur)]],
                           current=str(cur)))
        # ---- RSS ---------------------------------------------------------
        if "rss" in wanted_cats and k > 1:
            r = host.run(["ethtool", "-x", iface])
            rss = parsers.parse_rss(r.out) if r.ok else None
            if rss and rss.table:
                even = rss.table == [i % k for i in range(len(rss.table))]
                old = rss.queues_used()
                was_equal = rss.table == [i % len(old) for i in range(len(rss.table))] and old == list(range(len(old)))
                rev = (["ethtool", "-X", iface, "equal", str(len(old))] if was_equal
                       else ["ethtool", "-X", iface, "default"])
                argv = ["ethtool", "-X", iface, "equal", str(k)]
                add(Action(key=f"rss:{iface}", category="rss",
                           what=f"{iface}: RSS indirection spread evenly over queues 0-{k - 1} (now uses {format_cpulist(old)})",
                           why="RSS hashes each 5-tuple (each WebRTC transport) to a queue; an even table gives every worker the same share",
                           verify=f"ethtool -x {iface}   # table entries cycle 0..{k - 1}",
                           kind="cmd", shell=[shlex.join(argv)], argv=[argv], revert_argv=[rev],
                           current=format_cpulist(old), satisfied=even))
            else:
                notes.append(f"RSS indirection of {iface} not readable (ethtool -x): RSS step skipped")
        # ---- offloads ----------------------------------------------------
        if "offload" in wanted_cats:
            r = host.run(["ethtool", "-k", iface])
            feats = parsers.parse_features(r.out) if r.ok else {}
            wanted = [("large-receive-offload", "lro", False,
                       "LRO merges packets in the NIC and cannot be undone; it breaks forwarding and is useless for UDP"),
                      ("generic-receive-offload", "gro", True,
                       "GRO is the kernel default; UDP is only coalesced for sockets that opt in (UDP_GRO), so it costs nothing and lets the dataplane use it later"),
                      ("generic-segmentation-offload", "gso", True,
                       "GSO lets the dataplane send a train of equal-size packets in one sendmsg (UDP_SEGMENT)")]
            if not feats:
                notes.append(f"offloads of {iface} not readable (ethtool -k): offload step skipped")
            for long, short, on, why in wanted:
                f = feats.get(long)
                if not f:
                    continue
                if f.fixed and f.on != on:
                    notes.append(f"{iface}: {long} is fixed {'on' if f.on else 'off'}")
                    continue
                state = "on" if on else "off"
                argv = ["ethtool", "-K", iface, short, state]
                add(Action(key=f"offload:{iface}:{short}", category="offload",
                           what=f"{iface}: {long} {state} (now {'on' if f.on else 'off'})",
                           why=why, verify=f"ethtool -k {iface} | grep {long}",
                           kind="cmd", shell=[shlex.join(argv)], argv=[argv],
                           revert_argv=[["ethtool", "-K", iface, short, "on" if f.on else "off"]],
                           current="on" if f.on else "off", satisfied=f.on == on))
        # ---- queue IRQs --------------------------------------------------
        queue_irq_set = set()
        if n.irqs:
            for i in range(k):
                for q in n.irqs_of_queue(i):
                    queue_irq_set.add(q.irq)
                    add(_file_action(
                        host, f"irq:{iface}:{q.kind}{i}:{q.irq}", "irq",
                        f"/proc/irq/{q.irq}/smp_affinity_list", str(queue_core[i]), "cpulist",
                        f"{iface} queue {i} ({q.kind}) IRQ {q.irq} ({q.name}) -> core {queue_core[i]}",
                        "the queue's interrupt and NAPI softirq run on the core of the worker that reads this queue's packets",
                        str(queue_core[i])))
            for q in n.irqs:
                if q.queue >= k:
                    queue_irq_set.add(q.irq)   # idle queues after the change: leave them
        elif n.physical:
            notes.append(f"no per-queue IRQs of {iface} found in /proc/interrupts: IRQ pinning skipped")
        else:
            notes.append(f"{iface} is a virtual NIC without IRQs: IRQ pinning skipped")
        # ---- XPS / RPS ---------------------------------------------------
        will_change = chan_action is not None and not chan_action.satisfied
        tx_n = k if will_change else n.tx_queues
        for i in range(tx_n):
            cores = {workers[w] for w in range(len(workers)) if w % tx_n == i} if tx_n else set()
            if not cores:
                continue
            p = f"/sys/class/net/{iface}/queues/tx-{i}/xps_cpus"
            if host.read(p) is None and (tx_n <= 1 or not will_change):
                notes.append(f"{p} not readable (single-queue device or kernel without XPS): XPS skipped")
                break
            add(_file_action(host, f"xps:{iface}:{i}", "xps", p, format_mask(cores), "mask",
                             f"{iface} tx queue {i} used by core(s) {format_cpulist(cores)} (XPS)",
                             "a worker transmits on the queue whose completion IRQ is on its own core: no TX lock contention, TX completions stay local",
                             format_mask(cores)))
        rx_n = k if will_change else n.rx_queues
        for i in range(rx_n):
            p = f"/sys/class/net/{iface}/queues/rx-{i}/rps_cpus"
            if host.read(p) is None and not will_change:
                continue
            add(_file_action(host, f"rps:{iface}:{i}", "rps", p, "0", "mask",
                             f"{iface} rx queue {i}: RPS off",
                             "with one hardware queue per worker, RPS would only bounce packets to another core's backlog",
                             "0 (or 00000000)"))
    else:
        queue_irq_set = set()

    # ---- other IRQs off the worker cores --------------------------------
    if "other-irqs" in wanted_cats:
        online = host.online_cpus()
        house = [c for c in online if c not in workers]
        if not house:
            notes.append("no housekeeping core left outside the workers: other IRQs cannot be moved")
        else:
            hl = format_cpulist(house)
            add(_file_action(host, "irq-default", "other-irqs", "/proc/irq/default_smp_affinity",
                             format_mask(house), "mask",
                             f"new IRQs default to housekeeping cores {hl}",
                             "IRQs registered later (hotplug, driver reload) must not land on worker cores",
                             format_mask(house)))
            for irq in sorted(interrupts):
                if irq in queue_irq_set:
                    continue
                p = f"/proc/irq/{irq}/smp_affinity_list"
                cur = host.read1(p)
                if cur is None:
                    continue
                try:
                    cur_set = set(parse_cpulist(cur))
                except ValueError:
                    continue
                if not cur_set & set(workers):
                    continue
                a = _file_action(host, f"other-irq:{irq}", "other-irqs", p, hl, "cpulist",
                                 f"IRQ {irq} ({interrupts[irq].name}) {cur} -> {hl}",
                                 "any other interrupt on a worker core steals cycles and pollutes its cache; "
                                 "some (per-CPU or kernel-managed) IRQs cannot be moved and will report EIO",
                                 hl)
                add(a)

    # ---- sysctls ---------------------------------------------------------
    if "sysctl" in wanted_cats:
        for name, value in sysctl_targets(pps, max(1, k), busy_poll).items():
            p = sysctl_path(name)
            if not host.exists(p):
                notes.append(f"{name} not present here (not in this network namespace?): skipped")
                continue
            compare = "udp_mem" if name.endswith("udp_mem") else (
                "int" if "busy" in name else "atleast")
            add(_file_action(host, f"sysctl:{name}", "sysctl", p, value, compare,
                             f"{name} = {value}" + (" (at least)" if compare != "int" else ""),
                             SYSCTL_WHY.get(name, ""), value + (" or more" if compare != "int" else ""),
                             shell=[f"sysctl -w {name}={shlex.quote(value)}"]))
    # ---- governor --------------------------------------------------------
    if "governor" in wanted_cats:
        missing = []
        for c in workers:
            p = f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            if not host.exists(p):
                missing.append(c)
                continue
            avail = host.read1(f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_available_governors") or ""
            if avail and "performance" not in avail.split():
                notes.append(f"cpu{c}: governor 'performance' not available ({avail})")
                continue
            add(_file_action(host, f"governor:{c}", "governor", p, "performance", "str",
                             f"cpu{c} frequency governor -> performance",
                             "a worker core must not clock down between bursts: ramp-up latency shows as jitter and drops",
                             "performance"))
        if missing:
            notes.append(f"no cpufreq for core(s) {format_cpulist(missing)} (VM or firmware-managed): governor step skipped")
    return Plan(iface, workers, k, queue_core, actions, notes)


def render_plan(plan: Plan) -> str:
    out = []
    out.append("#!/bin/sh")
    out.append(f"# sluice-tune plan: interface {plan.iface or '-'}, workers {','.join(map(str, plan.workers))}, "
               f"{plan.queues} queue(s)")
    out.append("# queue -> core -> dataplane worker:")
    for i, c in enumerate(plan.queue_core):
        out.append(f"#   queue {i} -> core {c} -> worker {i}")
    out.append("# Dataplane config ([dataplane] table) must list the cores in this order:")
    out.append(f"#   {plan.workers_line()}")
    for note in plan.notes:
        out.append(f"# NOTE: {note}")
    out.append("set -u")
    last_cat = last_why = None
    for a in plan.actions:
        if a.category != last_cat:
            out.append("")
            out.append(f"# ===== {a.category} =====")
            last_cat = a.category
        out.append(f"# {a.what}{'   [already in wanted state]' if a.satisfied else ''}")
        if a.why and a.why != last_why:
            out.append(f"#   why: {a.why}")
        last_why = a.why
        out.append(f"#   verify: {a.verify}")
        out.extend(a.shell)
    out.append("")
    out.append(f"# worker order for the dataplane config:")
    out.append(plan.workers_line())
    return "\n".join(out) + "\n"

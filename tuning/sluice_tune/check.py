"""`check`: is this host ready for the Sluice dataplane?  One Item per fact."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from . import nic as nicmod
from . import parsers
from .cpus import format_cpulist, format_mask, parse_cpulist, parse_mask
from .host import Host
from .plan import DEFAULT_PPS, RX_RING_TARGET, same, sysctl_path, sysctl_targets

OK, WARN, FAIL, INFO = "OK", "WARN", "FAIL", "INFO"


@dataclass
class Item:
    item: str
    status: str
    detail: str

    def to_json(self):
        return {"item": self.item, "status": self.status, "detail": self.detail}


def _node_of_cpu(host: Host, cpu: int) -> Optional[int]:
    for name in host.listdir(f"/sys/devices/system/cpu/cpu{cpu}"):
        m = re.fullmatch(r"node(\d+)", name)
        if m:
            return int(m.group(1))
    for name in host.listdir("/sys/devices/system/node"):
        m = re.fullmatch(r"node(\d+)", name)
        if m:
            cl = host.read1(f"/sys/devices/system/node/{name}/cpulist")
            try:
                if cl and cpu in parse_cpulist(cl):
                    return int(m.group(1))
            except ValueError:
                pass
    return None


def run_checks(host: Host, iface: Optional[str] = None,
               workers: Optional[List[int]] = None, pps: int = DEFAULT_PPS) -> List[Item]:
    items: List[Item] = []
    add = lambda i, s, d: items.append(Item(i, s, d))
    online = host.online_cpus()

    # ---- kernel / io_uring ----------------------------------------------
    release = host.read1("/proc/sys/kernel/osrelease")
    ver = parsers.parse_kernel_version(release or "")
    add("kernel", INFO, f"Linux {release}" if release else "kernel release unknown (/proc/sys/kernel/osrelease missing)")
    disabled = host.read1("/proc/sys/kernel/io_uring_disabled")
    if ver and ver < (5, 6):
        add("io_uring", FAIL, f"kernel {release} is older than 5.6: no usable io_uring")
    elif disabled == "2":
        add("io_uring", FAIL, "kernel.io_uring_disabled=2: io_uring is disabled for everyone (set 0)")
    elif disabled == "1":
        grp = host.read1("/proc/sys/kernel/io_uring_group")
        add("io_uring", WARN, f"kernel.io_uring_disabled=1: only root/CAP_SYS_ADMIN or group {grp} may create rings")
    elif ver and ver < (6, 0):
        add("io_uring", WARN, f"kernel {release}: io_uring present but < 6.0 (no multishot recvmsg); "
                              "the dataplane falls back to plain recvmmsg")
    elif ver:
        add("io_uring", OK, f"kernel {release}" + (
            ", io_uring_disabled=0" if disabled == "0" else
            " (no io_uring_disabled sysctl, so not restricted)"))
    else:
        add("io_uring", WARN, "kernel version unknown: cannot tell whether io_uring is usable")

    # ---- workers ---------------------------------------------------------
    if workers:
        bad = [c for c in workers if online and c not in online]
        if bad:
            add("workers", FAIL, f"worker core(s) {format_cpulist(bad)} not online (online: {format_cpulist(online)})")
        elif online and len(workers) >= len(online):
            add("workers", WARN, f"workers {','.join(map(str, workers))} use every online CPU: no housekeeping core left")
        elif 0 in workers:
            add("workers", WARN, f"workers {','.join(map(str, workers))} include core 0 (timers, most IRQs, housekeeping)")
        else:
            add("workers", OK, f"workers {','.join(map(str, workers))} on {len(online)} online CPU(s) ({format_cpulist(online)})")
    else:
        add("workers", INFO, f"no --workers/--config given: per-worker checks skipped ({len(online)} CPUs online: {format_cpulist(online)})")

    interrupts_text = host.read("/proc/interrupts")
    interrupts = parsers.parse_interrupts(interrupts_text or "")
    if interrupts_text is None:
        add("interrupts", WARN, "/proc/interrupts not readable: IRQ checks skipped")
    have_ethtool = host.has_tool("ethtool")
    if not have_ethtool:
        add("ethtool", WARN, "ethtool not found: channel/RSS/offload/ring checks skipped (install ethtool)")

    # ---- NICs ------------------------------------------------------------
    nics = nicmod.pick_nics(host, iface)
    if not nics:
        add("nic", WARN, "no physical NIC found under /sys/class/net (use --iface to name one)")
    queue_irqs = set()
    for name in nics:
        base = f"/sys/class/net/{name}"
        p = f"nic {name}"
        if not host.exists(base):
            add(p, FAIL, f"interface {name} does not exist")
            continue
        n = nicmod.discover(host, name, interrupts)
        queue_irqs.update(q.irq for q in n.irqs)
        kind = "physical" if n.physical else "virtual"
        add(f"{p} driver", INFO, f"{n.driver or 'unknown driver'}, {kind}" + (f", bus {n.bus}" if n.bus else ""))
        # queues
        k_now = n.queue_count()
        chan = ""
        if n.channels:
            c, m = n.channels.current, n.channels.max
            chan = (f"; ethtool -l: combined {c.get('combined') or 0}/{m.get('combined') or 0}, "
                    f"rx {c.get('rx') or 0}/{m.get('rx') or 0}, tx {c.get('tx') or 0}/{m.get('tx') or 0} (current/max)")
        elif have_ethtool:
            chan = "; ethtool -l not supported"
        qdetail = f"/sys: {n.rx_queues} rx, {n.tx_queues} tx queue(s){chan}"
        if workers:
            maxq = n.max_queues() or k_now
            if k_now == len(workers):
                add(f"{p} queues", OK, f"{k_now} queue(s) = {len(workers)} workers; {qdetail}")
            elif maxq and maxq < len(workers):
                add(f"{p} queues", WARN, f"NIC supports {maxq} queue(s) for {len(workers)} workers; {qdetail}")
            else:
                add(f"{p} queues", WARN, f"{k_now} queue(s) in use, want {len(workers)} (one per worker; run plan); {qdetail}")
        else:
            add(f"{p} queues", INFO, qdetail)
        # IRQ -> CPU per queue
        if not n.irqs:
            add(f"{p} irqs", INFO if not n.physical else WARN,
                "no per-queue IRQs found" + (" (virtual NIC)" if not n.physical else
                                             " in /proc/interrupts (unknown naming scheme?)"))
        else:
            for qi in sorted({q.queue for q in n.irqs}):
                for q in n.irqs_of_queue(qi):
                    aff = host.read1(f"/proc/irq/{q.irq}/smp_affinity_list")
                    counts = interrupts.get(q.irq)
                    hot = counts.cpus_with_counts() if counts else []
                    d = f"IRQ {q.irq} {q.name} -> cpu {aff if aff is not None else '?'}" + (
                        f" (served so far on {format_cpulist(hot)})" if hot else "")
                    if aff is None:
                        add(f"{p} q{qi} {q.kind} irq", WARN, d + "; smp_affinity_list not readable")
                    elif workers and qi < len(workers):
                        want = str(workers[qi])
                        st = OK if same("cpulist", aff, want) else WARN
                        add(f"{p} q{qi} {q.kind} irq", st, d + ("" if st == OK else f"; want cpu {want}"))
                    elif workers:
                        add(f"{p} q{qi} {q.kind} irq", INFO, d + "; no worker for this queue")
                    else:
                        add(f"{p} q{qi} {q.kind} irq", INFO, d)
        # RSS
        if have_ethtool:
            r = host.run(["ethtool", "-x", name])
            rss = parsers.parse_rss(r.out) if r.ok else None
            if not rss or not rss.table:
                add(f"{p} rss", INFO, "no RSS indirection table (ethtool -x unsupported)")
            else:
                used = rss.queues_used()
                d = (f"{len(rss.table)} entries over queue(s) {format_cpulist(used)}"
                     + (f", hash {rss.hfunc}" if rss.hfunc else ""))
                if workers:
                    k = min(len(workers), n.max_queues() or len(workers))
                    even = rss.table == [i % k for i in range(len(rss.table))]
                    add(f"{p} rss", OK if even else WARN, d + ("" if even else f"; want even over 0-{k - 1}"))
                else:
                    add(f"{p} rss", INFO, d)
        # RPS / XPS
        rps_on, xps = [], {}
        for q in host.listdir(f"{base}/queues"):
            if q.startswith("rx-"):
                v = host.read1(f"{base}/queues/{q}/rps_cpus")
                try:
                    if v and parse_mask(v):
                        rps_on.append(f"{q}={v}")
                except ValueError:
                    pass
            elif q.startswith("tx-"):
                v = host.read1(f"{base}/queues/{q}/xps_cpus")
                if v is not None:
                    try:
                        xps[int(q[3:])] = parse_mask(v)
                    except ValueError:
                        pass
        add(f"{p} rps", WARN if rps_on else OK,
            ("RPS enabled: " + ", ".join(rps_on[:8])) if rps_on else "RPS off on all rx queues")
        if not xps:
            add(f"{p} xps", INFO, "xps_cpus not readable (single tx queue, or kernel without XPS)")
        elif workers:
            bad = [f"tx-{i}={format_cpulist(xps.get(i, set())) or '-'}(want {w})"
                   for i, w in enumerate(workers[:len(xps)]) if xps.get(i) != {w}]
            add(f"{p} xps", WARN if bad else OK,
                ("XPS not matching workers: " + ", ".join(bad[:8])) if bad else
                "tx queue i -> worker core i")
        else:
            shown = ", ".join(f"tx-{i}={format_cpulist(c) or '-'}" for i, c in sorted(xps.items())[:8])
            add(f"{p} xps", INFO, shown)
        # offloads
        if have_ethtool:
            r = host.run(["ethtool", "-k", name])
            feats = parsers.parse_features(r.out) if r.ok else {}
            if not feats:
                add(f"{p} offloads", INFO, "ethtool -k gave nothing")
            else:
                def st(k):
                    f = feats.get(k)
                    return "n/a" if not f else ("on" if f.on else "off") + (" [fixed]" if f.fixed else "")
                d = f"gro {st('generic-receive-offload')}, gso {st('generic-segmentation-offload')}, " \
                    f"lro {st('large-receive-offload')}, tx-udp-segmentation {st('tx-udp-segmentation')}"
                lro = feats.get("large-receive-offload")
                gro = feats.get("generic-receive-offload")
                if lro and lro.on:
                    add(f"{p} offloads", WARN, d + "; LRO should be off for a forwarding host")
                elif gro and not gro.on and not gro.fixed:
                    add(f"{p} offloads", WARN, d + "; GRO off (kernel default is on)")
                else:
                    add(f"{p} offloads", OK, d)
            r = host.run(["ethtool", "-g", name])
            rings = parsers.parse_rings(r.out) if r.ok else None
            if not rings or not rings["max"].get("rx"):
                add(f"{p} rings", INFO, "ring sizes not available (ethtool -g unsupported)")
            else:
                cur, mx = rings["current"].get("rx") or 0, rings["max"]["rx"]
                tx, txm = rings["current"].get("tx"), rings["max"].get("tx")
                d = f"rx {cur}/{mx}, tx {tx}/{txm} (current/max)"
                want = min(mx, RX_RING_TARGET)
                add(f"{p} rings", OK if cur >= want else WARN, d + ("" if cur >= want else f"; want rx >= {want}"))
        # NUMA
        if n.numa_node is None or n.numa_node < 0:
            add(f"{p} numa", INFO, "NIC has no NUMA node (single node, or virtual)")
        elif workers:
            nodes = {c: _node_of_cpu(host, c) for c in workers}
            far = [c for c, nd in nodes.items() if nd is not None and nd != n.numa_node]
            add(f"{p} numa", WARN if far else OK,
                f"NIC on node {n.numa_node}; " + (f"worker core(s) {format_cpulist(far)} on another node"
                                                  if far else "all workers on the same node"))
        else:
            add(f"{p} numa", INFO, f"NIC on node {n.numa_node}")

    # ---- sysctls ----------------------------------------------------------
    k = len(workers) if workers else max(1, len(online) - 1)
    targets = sysctl_targets(pps, k)
    for name, want in targets.items():
        cur = host.read(sysctl_path(name))
        if cur is None:
            add(name, INFO, "not readable here (missing, or not in this network namespace)")
            continue
        cur = " ".join(cur.split())
        cmp = "udp_mem" if name.endswith("udp_mem") else "atleast"
        ok = same(cmp, cur, want)
        add(name, OK if ok else WARN, f"{cur}" + ("" if ok else f" < recommended {want} for {pps} pps over {k} worker(s)"))

    # ---- per worker core --------------------------------------------------
    cpus = workers or []
    if cpus:
        govs, missing = {}, []
        for c in cpus:
            g = host.read1(f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor")
            if g is None:
                missing.append(c)
            else:
                govs[c] = g
        if missing and not govs:
            add("governor", INFO, f"no cpufreq on core(s) {format_cpulist(missing)} (VM or firmware-managed frequency)")
        else:
            bad = {c: g for c, g in govs.items() if g != "performance"}
            add("governor", WARN if bad else OK,
                ", ".join(f"cpu{c}={g}" for c, g in govs.items()) +
                (f"; no cpufreq on {format_cpulist(missing)}" if missing else ""))
        shared, other = [], []
        for c in cpus:
            sib = host.read1(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list")
            if sib is None:
                continue
            try:
                sibs = [s for s in parse_cpulist(sib) if s != c]
            except ValueError:
                continue
            for s in sibs:
                if s in cpus:
                    shared.append("+".join(map(str, sorted((c, s)))))
                else:
                    other.append(f"{c}~{s}")
        if shared:
            add("smt", WARN, "worker cores that are SMT siblings of each other: " + ", ".join(sorted(set(shared))) +
                " (two workers share one physical core)")
        elif other:
            add("smt", INFO, "SMT siblings of worker cores (keep them idle or offline them): " + ", ".join(other))
        else:
            add("smt", OK, "no SMT siblings on worker cores")
        cmd = parsers.parse_cmdline(host.read("/proc/cmdline") or "")
        iso, nohz = cmd.get("isolcpus"), cmd.get("nohz_full")
        try:
            iso_set = set(parse_cpulist(iso or ""))
            nohz_set = set(parse_cpulist(nohz or ""))
        except ValueError:
            iso_set, nohz_set = set(), set()
        missing_iso = [c for c in cpus if c not in iso_set]
        add("isolcpus", OK if not missing_iso else WARN,
            f"isolcpus={iso or '-'}, nohz_full={nohz or '-'}" +
            (f"; worker core(s) {format_cpulist(missing_iso)} not isolated (scheduler may run other tasks there)"
             if missing_iso else "") +
            ("" if set(cpus) <= nohz_set else "; nohz_full not set for all workers (optional)"))
        # other IRQs on worker cores
        busy = []
        for irq, line in sorted(interrupts.items()):
            if irq in queue_irqs:
                continue
            aff = host.read1(f"/proc/irq/{irq}/smp_affinity_list")
            try:
                if aff and set(parse_cpulist(aff)) & set(cpus):
                    busy.append(f"{irq}({line.name or '?'})")
            except ValueError:
                pass
        add("other irqs", WARN if busy else OK,
            (f"{len(busy)} non-queue IRQ(s) may run on worker cores: " + ", ".join(busy[:10]) +
             (" ..." if len(busy) > 10 else "")) if busy else "no other IRQ allowed on worker cores")
    irqb = host.process_running("irqbalance")
    add("irqbalance", WARN if irqb else OK,
        "irqbalance is running and will move the queue IRQs" if irqb else "irqbalance not running")
    thp = host.read1("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp is None:
        add("thp", INFO, "transparent huge pages: not available")
    else:
        mode = re.search(r"\[(\w+)\]", thp)
        mode = mode.group(1) if mode else thp
        add("thp", WARN if mode == "always" else OK,
            f"transparent_hugepage={mode}" + ("; 'always' lets khugepaged compaction stall workers, prefer madvise"
                                              if mode == "always" else ""))
    return items


def summarize(items: List[Item]) -> Dict:
    counts = {s.lower(): sum(1 for i in items if i.status == s) for s in (OK, WARN, FAIL, INFO)}
    counts["ready"] = counts["fail"] == 0 and counts["warn"] == 0
    return counts


def render_text(items: List[Item]) -> str:
    width = max((len(i.item) for i in items), default=10)
    lines = [f"{i.status:<4}  {i.item:<{width}}  {i.detail}" for i in items]
    s = summarize(items)
    lines.append(f"summary: {s['ok']} ok, {s['warn']} warn, {s['fail']} fail, {s['info']} info"
                 f" -> {'ready' if s['ready'] else 'not ready'}")
    return "\n".join(lines) + "\n"

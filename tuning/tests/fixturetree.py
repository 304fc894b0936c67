"""Expand tests/fixtures/<driver>/tree.json (+ interrupts.txt) into a small
/proc + /sys tree in a temporary directory, for `--root`."""

import json
import os

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def _w(root, rel, text):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def _link(root, rel, target):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.symlink(target, p)


def build_root(name, dest):
    d = os.path.join(FIXTURES, name)
    with open(os.path.join(d, "tree.json")) as f:
        s = json.load(f)
    with open(os.path.join(d, "interrupts.txt")) as f:
        _w(dest, "proc/interrupts", f.read())
    _w(dest, "proc/cmdline", s["cmdline"])
    for rel, text in s["files"].items():
        _w(dest, rel, text)
    n = s["cpus"]
    _w(dest, "sys/devices/system/cpu/online", f"0-{n - 1}")
    sib = {c: [c] for c in range(n)}
    for a, b in s["smt_pairs"]:
        sib[a] = sib[b] = sorted([a, b])
    for node, cl in s["numa_cpus"].items():
        _w(dest, f"sys/devices/system/node/node{node}/cpulist", cl)
    for c in range(n):
        base = f"sys/devices/system/cpu/cpu{c}"
        _w(dest, f"{base}/topology/thread_siblings_list", ",".join(map(str, sib[c])))
        if s["governor"]:
            _w(dest, f"{base}/cpufreq/scaling_governor", s["governor"])
            _w(dest, f"{base}/cpufreq/scaling_available_governors", "performance powersave")
    for irq, aff in s["affinity"].items():
        _w(dest, f"proc/irq/{irq}/smp_affinity_list", aff)
    mask = 0
    for c in range(n):
        mask |= 1 << c
    _w(dest, "proc/irq/default_smp_affinity", f"{mask:x}")
    for i, comm in enumerate(s["running"]):
        _w(dest, f"proc/{100 + i}/comm", comm)
    # the NIC: /sys/class/net/IF -> ../../devices/.../net/IF, device -> PCI/virtio dir
    iface, dev = s["iface"], s["device"]
    devdir = f"sys/{dev}"
    _w(dest, f"sys/bus/pci/drivers/{s['driver']}/.keep", "")
    os.makedirs(os.path.join(dest, devdir), exist_ok=True)
    _link(dest, f"{devdir}/driver", os.path.relpath(os.path.join(dest, f"sys/bus/pci/drivers/{s['driver']}"),
                                                    os.path.join(dest, devdir)))
    if s["numa_node"] is not None:
        _w(dest, f"{devdir}/numa_node", str(s["numa_node"]))
    netdir = f"{devdir}/net/{iface}"
    _link(dest, f"{netdir}/device", "../..")
    for q in range(s["rx"]):
        _w(dest, f"{netdir}/queues/rx-{q}/rps_cpus", "00")
    for q in range(s["tx"]):
        _w(dest, f"{netdir}/queues/tx-{q}/xps_cpus", "00")
    _link(dest, f"sys/class/net/{iface}", os.path.relpath(os.path.join(dest, netdir),
                                                          os.path.join(dest, "sys/class/net")))
    _w(dest, "sys/devices/virtual/net/lo/queues/rx-0/rps_cpus", "0")
    _link(dest, "sys/class/net/lo", "../../devices/virtual/net/lo")
    return dest, os.path.join(d, "cmds"), s

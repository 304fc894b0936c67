"""NIC discovery and NIC-queue -> IRQ mapping for the common naming schemes.

Queue IRQ names seen in /proc/interrupts:
  ixgbe/i40e/igb/bnxt   eth0-TxRx-3   (or eth0-rx-3 / eth0-tx-3 when not paired)
  ice                   ice-eth0-TxRx-3
  ena                   ens5-Tx-Rx-3
  qede                  eth0-fp-3
  mlx5                  mlx5_comp3@pci:0000:3b:00.0   (completion vector 3 ~ channel 3)
  virtio_net            virtio2-input.3 / virtio2-output.3   (virtioN = the virtio device)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import parsers
from .host import Host

VIRTUAL_KINDS = ("veth", "bridge", "bond", "tun", "ifb", "dummy", "vxlan",
                 "macvlan", "ipvlan", "wireguard", "team", "geneve", "vlan")


@dataclass
class QueueIrq:
    queue: int
    kind: str          # "txrx", "rx" or "tx"
    irq: int
    name: str


@dataclass
class Nic:
    name: str
    driver: Optional[str] = None
    bus: Optional[str] = None          # PCI address or virtio device name
    numa_node: Optional[int] = None
    rx_queues: int = 0                 # /sys/class/net/IF/queues/rx-*
    tx_queues: int = 0
    physical: bool = False
    channels: Optional[parsers.Channels] = None
    irqs: List[QueueIrq] = field(default_factory=list)
    other_irqs: List[int] = field(default_factory=list)   # NIC IRQs not tied to a queue

    def queue_count(self) -> int:
        """Number of RX-capable queues/channels in use right now."""
        if self.channels:
            c = self.channels.current
            n = (c.get("combined") or 0) + (c.get("rx") or 0)
            if n:
                return n
        return self.rx_queues

    def max_queues(self) -> Optional[int]:
        if not self.channels:
            return None
        m = self.channels.max
        return max((m.get("combined") or 0), (m.get("rx") or 0)) or None

    def rx_irq(self, queue: int) -> Optional[QueueIrq]:
        for kind in ("txrx", "rx"):
            for q in self.irqs:
                if q.queue == queue and q.kind == kind:
                    return q
        return None

    def irqs_of_queue(self, queue: int) -> List[QueueIrq]:
        return [q for q in self.irqs if q.queue == queue]


def _count_queues(host: Host, ifname: str, prefix: str) -> int:
    return sum(1 for n in host.listdir(f"/sys/class/net/{ifname}/queues")
               if n.startswith(prefix))


def list_interfaces(host: Host) -> List[str]:
    return host.listdir("/sys/class/net")


def is_physical(host: Host, ifname: str) -> bool:
    return host.exists(f"/sys/class/net/{ifname}/device")


def default_route_iface(host: Host) -> Optional[str]:
    text = host.read("/proc/net/route") or ""
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) > 2 and f[1] == "00000000":
            return f[0]
    return None


def pick_nics(host: Host, iface: Optional[str]) -> List[str]:
    """--iface wins (even lo/veth); otherwise every interface with a backing
    device (skips lo, veth, bridges, ifb...)."""
    if iface:
        return [iface]
    return [n for n in list_interfaces(host) if n != "lo" and is_physical(host, n)]


def discover(host: Host, ifname: str,
             interrupts: Optional[Dict[int, parsers.IrqLine]] = None) -> Nic:
    base = f"/sys/class/net/{ifname}"
    nic = Nic(ifname)
    nic.physical = is_physical(host, ifname)
    nic.driver = host.readlink_base(f"{base}/device/driver")
    nic.bus = host.readlink_base(f"{base}/device")
    if not nic.driver:
        r = host.run(["ethtool", "-i", ifname])
        if r.ok:
            info = parsers.parse_driver_info(r.out)
            nic.driver = info.get("driver") or None
            if info.get("bus-info") and info["bus-info"] not in ("", "N/A"):
                nic.bus = nic.bus or info["bus-info"]
    numa = host.read1(f"{base}/device/numa_node")
    if numa is not None and re.fullmatch(r"-?\d+", numa):
        nic.numa_node = int(numa)
    nic.rx_queues = _count_queues(host, ifname, "rx-")
    nic.tx_queues = _count_queues(host, ifname, "tx-")
    r = host.run(["ethtool", "-l", ifname])
    if r.ok:
        nic.channels = parsers.parse_channels(r.out)
    if interrupts is None:
        interrupts = parsers.parse_interrupts(host.read("/proc/interrupts") or "")
    nic.irqs, nic.other_irqs = map_queue_irqs(ifname, nic.bus, interrupts)
    return nic


def map_queue_irqs(ifname: str, bus: Optional[str],
                   interrupts: Dict[int, parsers.IrqLine]):
    """Return (queue IRQs sorted by queue, other IRQs of this NIC)."""
    ifq = re.escape(ifname)
    named = re.compile(
        rf"^(?:[\w.]+-)?{ifq}-(TxRx|txrx|Tx-Rx|tx-rx|rx|tx|Rx|Tx|fp|combined)-(\d+)$")
    generic = re.compile(rf"^{ifq}[-_](?:q|queue)?-?(\d+)$")
    pats = []
    if bus and bus.startswith("virtio"):
        vb = re.escape(bus)
        pats.append((re.compile(rf"^{vb}-input\.(\d+)$"), "rx"))
        pats.append((re.compile(rf"^{vb}-output\.(\d+)$"), "tx"))
    if bus:
        pats.append((re.compile(rf"^mlx5_comp(\d+)@pci:{re.escape(bus)}$"), "txrx"))
    queue_irqs: List[QueueIrq] = []
    other: List[int] = []
    for irq, line in sorted(interrupts.items()):
        names = [n.strip() for n in line.name.split(",") if n.strip()]
        hit = None
        for n in names:
            m = named.match(n)
            if m:
                token = m.group(1).lower()
                kind = "rx" if token == "rx" else "tx" if token == "tx" else "txrx"
                hit = QueueIrq(int(m.group(2)), kind, irq, n)
                break
            for pat, kind in pats:
                m = pat.match(n)
                if m:
                    hit = QueueIrq(int(m.group(1)), kind, irq, n)
                    break
            if hit:
                break
            m = generic.match(n)
            if m:
                hit = QueueIrq(int(m.group(1)), "txrx", irq, n)
                break
        if hit:
            queue_irqs.append(hit)
            continue
        # IRQs that belong to the NIC but no queue (link/async/config vectors)
        if any(n == ifname or n.startswith(ifname + "-") or
               (bus and (n.endswith("@pci:" + bus) or n.startswith(bus + "-")))
               for n in names):
            other.append(irq)
    queue_irqs.sort(key=lambda q: (q.queue, q.kind))
    return queue_irqs, other

"""Parsers for /proc/interrupts and ethtool text output.

All parsers are pure functions of text and never raise on odd input: they
return what they could understand (possibly empty)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional


# ---------------------------------------------------------------- interrupts
@dataclass
class IrqLine:
    irq: int
    counts: List[int]          # one per CPU column
    chip: str                  # e.g. "IR-PCI-MSI 1572864-edge"
    name: str                  # action name(s), e.g. "mlx5_comp0@pci:0000:3b:00.0"

    def cpus_with_counts(self) -> List[int]:
        return [i for i, n in enumerate(self.counts) if n]


_TRIGGER = re.compile(r"(?i)(edge|level|fasteoi|simple)$")


def parse_interrupts(text: str) -> Dict[int, IrqLine]:
    """Numbered IRQ lines of /proc/interrupts keyed by IRQ number.

    The header gives the CPU columns ("CPU0 CPU1 ..." — offline CPUs are
    left out, so the column index is the position in the header).  After the
    counts come the chip name, usually the hwirq+trigger ("5-edge"), then the
    handler name(s); we take everything after the last trigger-like token as
    the name, falling back to the last token."""
    out: Dict[int, IrqLine] = {}
    lines = (text or "").splitlines()
    if not lines:
        return out
    header = lines[0].split()
    ncpu = sum(1 for h in header if h.startswith("CPU"))
    for line in lines[1:]:
        if ":" not in line:
            continue
        head, rest = line.split(":", 1)
        head = head.strip()
        if not head.isdigit():
            continue
        toks = rest.split()
        counts = []
        i = 0
        while i < len(toks) and i < ncpu and toks[i].isdigit():
            counts.append(int(toks[i]))
            i += 1
        tail = toks[i:]
        name_start = None
        for j, t in enumerate(tail):
            if _TRIGGER.search(t) and j + 1 < len(tail):
                name_start = j + 1
        if name_start is None:
            name_start = len(tail) - 1 if len(tail) > 1 else 0
        chip = " ".join(tail[:name_start])
        name = " ".join(tail[name_start:])
        out[int(head)] = IrqLine(int(head), counts, chip, name)
    return out


# ---------------------------------------------------------------- ethtool
def _num(v: str) -> Optional[int]:
    v = v.strip()
    return int(v) if re.fullmatch(r"\d+", v) else None


def parse_sections(text: str) -> Dict[str, Dict[str, str]]:
    """Shared parser for `ethtool -l` and `ethtool -g`:
    {"max": {"rx": "4096", ...}, "current": {...}} with lower-case keys."""
    out: Dict[str, Dict[str, str]] = {"max": {}, "current": {}}
    section = None
    for line in (text or "").splitlines():
        s = line.strip()
        low = s.lower()
        if low.startswith("pre-set maximums"):
            section = "max"
            continue
        if low.startswith("current hardware settings"):
            section = "current"
            continue
        if section and ":" in s:
            k, v = s.split(":", 1)
            out[section][k.strip().lower()] = v.strip()
    return out


@dataclass
class Channels:
    max: Dict[str, Optional[int]] = field(default_factory=dict)
    current: Dict[str, Optional[int]] = field(default_factory=dict)

    def get(self, which: str, key: str) -> int:
        d = self.max if which == "max" else self.current
        return d.get(key) or 0


def parse_channels(text: str) -> Optional[Channels]:
    secs = parse_sections(text)
    if not secs["max"] and not secs["current"]:
        return None
    keys = ("rx", "tx", "other", "combined")
    return Channels(
        max={k: _num(secs["max"].get(k, "")) for k in keys},
        current={k: _num(secs["current"].get(k, "")) for k in keys},
    )


def parse_rings(text: str) -> Optional[Dict[str, Dict[str, Optional[int]]]]:
    secs = parse_sections(text)
    if not secs["max"] and not secs["current"]:
        return None
    return {sec: {k: _num(v) for k, v in d.items()} for sec, d in secs.items()}


@dataclass
class Rss:
    rings: Optional[int]
    table: List[int]
    hfunc: Optional[str]

    def queues_used(self) -> List[int]:
        return sorted(set(self.table))


def parse_rss(text: str) -> Optional[Rss]:
    """`ethtool -x`: ring count, indirection table, active hash function."""
    if not text or "indirection" not in text.lower():
        return None
    rings = None
    m = re.search(r"with (\d+) RX ring", text)
    if m:
        rings = int(m.group(1))
    table: List[int] = []
    hfunc = None
    in_table = in_hf = False
    for line in text.splitlines():
        s = line.strip()
        low = s.lower()
        if "indirection table" in low:
            in_table, in_hf = True, False
            continue
        if low.startswith("rss hash key"):
            in_table = False
            continue
        if low.startswith("rss hash function"):
            in_table, in_hf = False, True
            continue
        if in_table:
            m = re.match(r"^(\d+):\s+(.*)$", s)
            if m:
                table.extend(int(x) for x in m.group(2).split() if x.isdigit())
        elif in_hf:
            m = re.match(r"^([\w-]+):\s+(on|off)$", s)
            if m and m.group(2) == "on":
                hfunc = m.group(1)
    return Rss(rings, table, hfunc)


@dataclass
class Feature:
    on: bool
    fixed: bool


def parse_features(text: str) -> Dict[str, Feature]:
    """`ethtool -k`: {"generic-receive-offload": Feature(on, fixed)}."""
    out: Dict[str, Feature] = {}
    for line in (text or "").splitlines():
        m = re.match(r"^\s*([a-z0-9-]+):\s+(on|off)(\s+\[(?:requested \w+|fixed)\])?", line)
        if m:
            out[m.group(1)] = Feature(m.group(2) == "on",
                                      bool(m.group(3) and "fixed" in m.group(3)))
    return out


def parse_driver_info(text: str) -> Dict[str, str]:
    """`ethtool -i`: {"driver": "mlx5_core", "bus-info": "0000:3b:00.0", ...}."""
    out: Dict[str, str] = {}
    for line in (text or "").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


def parse_cmdline(text: str) -> Dict[str, str]:
    """/proc/cmdline -> {"isolcpus": "2-5", "nohz_full": "2-5", ...}.
    Stops at a lone "--" (what follows belongs to init)."""
    out: Dict[str, str] = {}
    for tok in (text or "").split():
        if tok == "--":
            break
        k, _, v = tok.partition("=")
        out[k] = v
    return out


def parse_kernel_version(release: str) -> Optional[tuple]:
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", (release or "").strip())
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))

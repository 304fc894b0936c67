"""CPU list / CPU mask helpers.

Two textual forms are used by the kernel:
  * cpu lists  "0-3,8,10-11"   (smp_affinity_list, isolcpus, thread_siblings_list)
  * hex masks  "00000000,0000000f"  (smp_affinity, rps_cpus, xps_cpus)
"""

from __future__ import annotations

from typing import Iterable, List, Set


class CpuListError(ValueError):
    pass


def parse_cpulist(text: str, keep_order: bool = False) -> List[int]:
    """Parse "2-5,8" into [2, 3, 4, 5, 8].

    With keep_order the items are returned in the order written (a worker
    list "5,4,3,2" means worker 0 on core 5); duplicates are an error there.
    Without it the result is sorted and de-duplicated.  Kernel-style stride
    syntax ("0-15:2/4") is accepted for isolcpus-like inputs.
    """
    text = (text or "").strip()
    if not text:
        return []
    out: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        # isolcpus may carry flags like "domain,managed_irq,2-5": skip words
        if part.isalpha() or "_" in part:
            continue
        stride = None
        if ":" in part:
            part, stride_txt = part.split(":", 1)
            try:
                used, group = stride_txt.split("/")
                stride = (int(used), int(group))
            except ValueError as exc:
                raise CpuListError(f"bad stride in cpu list: {text!r}") from exc
        try:
            if "-" in part:
                lo_txt, hi_txt = part.split("-", 1)
                lo, hi = int(lo_txt), int(hi_txt)
                if hi < lo:
                    raise CpuListError(f"descending range {part!r} in {text!r}")
                cpus = list(range(lo, hi + 1))
            else:
                cpus = [int(part)]
        except ValueError as exc:
            raise CpuListError(f"bad cpu list: {text!r}") from exc
        if stride:
            used, group = stride
            base = cpus[0]
            cpus = [c for c in cpus if (c - base) % group < used]
        if any(c < 0 for c in cpus):
            raise CpuListError(f"negative cpu in {text!r}")
        out.extend(cpus)
    if keep_order:
        seen: Set[int] = set()
        for c in out:
            if c in seen:
                raise CpuListError(f"cpu {c} listed twice in {text!r}")
            seen.add(c)
        return out
    return sorted(set(out))


def format_cpulist(cpus: Iterable[int]) -> str:
    """[0,1,2,3,8] -> "0-3,8" (sorted, compact)."""
    s = sorted(set(cpus))
    if not s:
        return ""
    parts = []
    start = prev = s[0]
    for c in s[1:]:
        if c == prev + 1:
            prev = c
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = c
    parts.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ",".join(parts)


def parse_mask(text: str) -> Set[int]:
    """"00000000,0000000f" -> {0,1,2,3}."""
    text = (text or "").strip().replace(",", "")
    if not text:
        return set()
    try:
        value = int(text, 16)
    except ValueError as exc:
        raise CpuListError(f"bad cpu mask: {text!r}") from exc
    cpus = set()
    bit = 0
    while value:
        if value & 1:
            cpus.add(bit)
        value >>= 1
        bit += 1
    return cpus


def format_mask(cpus: Iterable[int]) -> str:
    """{0,1,2,3} -> "f"; {33} -> "2,00000000" (32-bit groups, like the kernel)."""
    value = 0
    for c in cpus:
        value |= 1 << c
    digits = f"{value:x}"
    groups = []
    while len(digits) > 8:
        groups.insert(0, digits[-8:])
        digits = digits[:-8]
    groups.insert(0, digits)
    return ",".join(groups)

"""Access to the host: files under a root (so /proc and /sys can be a fixture
tree) and external commands through an injectable runner (so ethtool output
can come from fixture files).  Every reader returns None instead of raising
when a file or tool is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence


@dataclass
class CmdResult:
    rc: int
    out: str = ""
    err: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0


class SubprocessRunner:
    """Runs real commands. A missing binary gives rc 127, a hang rc 124."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout

    def available(self, tool: str) -> bool:
        return shutil.which(tool) is not None

    def __call__(self, argv: Sequence[str]) -> CmdResult:
        if not self.available(argv[0]):
            return CmdResult(127, "", f"{argv[0]}: command not found")
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True,
                               timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return CmdResult(124, "", f"{argv[0]}: timed out")
        except OSError as exc:
            return CmdResult(126, "", f"{argv[0]}: {exc}")
        return CmdResult(p.returncode, p.stdout, p.stderr)


def fixture_name(argv: Sequence[str]) -> str:
    """["ethtool", "-l", "eth0"] -> "ethtool_-l_eth0.txt"."""
    return re.sub(r"[^A-Za-z0-9._-]", "", "_".join(argv)) + ".txt"


class FixtureRunner:
    """Answers commands from files in a directory (see fixture_name).

    A file named "<name>.rc" next to it may hold a non-zero exit status.
    Commands without a fixture answer rc 127, as if the tool were missing,
    unless `default_ok` is set (then they "succeed" with empty output, which
    is what tests of apply want for state-changing commands).  Every call is
    recorded in `.calls`."""

    def __init__(self, directory: str, default_ok: bool = False,
                 tools: Optional[List[str]] = None):
        self.directory = directory
        self.default_ok = default_ok
        self.tools = tools
        self.calls: List[List[str]] = []

    def available(self, tool: str) -> bool:
        if self.tools is not None:
            return tool in self.tools
        return any(n.startswith(tool + "_") for n in os.listdir(self.directory))

    def __call__(self, argv: Sequence[str]) -> CmdResult:
        self.calls.append(list(argv))
        path = os.path.join(self.directory, fixture_name(argv))
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                out = f.read()
            rc = 0
            if os.path.exists(path[:-4] + ".rc"):
                with open(path[:-4] + ".rc", encoding="utf-8") as f:
                    rc = int(f.read().strip() or "0")
            return CmdResult(rc, out if rc == 0 else "", "" if rc == 0 else out)
        if self.default_ok and self.available(argv[0]):
            return CmdResult(0, "", "")
        return CmdResult(127, "", f"{argv[0]}: no fixture {fixture_name(argv)}")


@dataclass
class Host:
    root: str = "/"
    runner: object = field(default_factory=SubprocessRunner)

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/"))

    def read(self, p: str) -> Optional[str]:
        try:
            with open(self.path(p), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def read1(self, p: str) -> Optional[str]:
        """First line, stripped."""
        text = self.read(p)
        if text is None:
            return None
        return text.strip().splitlines()[0].strip() if text.strip() else ""

    def exists(self, p: str) -> bool:
        return os.path.exists(self.path(p))

    def listdir(self, p: str) -> List[str]:
        try:
            return sorted(os.listdir(self.path(p)))
        except OSError:
            return []

    def readlink_base(self, p: str) -> Optional[str]:
        """Basename of a symlink's target (driver name, PCI address...)."""
        full = self.path(p)
        if not os.path.lexists(full):
            return None
        try:
            return os.path.basename(os.path.realpath(full).rstrip("/")) or None
        except OSError:
            return None

    def writable(self, p: str) -> bool:
        full = self.path(p)
        return os.path.exists(full) and os.access(full, os.W_OK)

    def write(self, p: str, value: str) -> None:
        """Write like `echo value > p`; raises OSError on failure."""
        with open(self.path(p), "w", encoding="utf-8") as f:
            f.write(value + "\n")

    def run(self, argv: Sequence[str]) -> CmdResult:
        return self.runner(argv)

    def has_tool(self, tool: str) -> bool:
        avail = getattr(self.runner, "available", None)
        return bool(avail(tool)) if avail else True

    # ---- small facts used everywhere ---------------------------------
    def online_cpus(self) -> List[int]:
        from .cpus import parse_cpulist
        text = self.read1("/sys/devices/system/cpu/online")
        if text:
            try:
                return parse_cpulist(text)
            except ValueError:
                pass
        cpus = []
        for name in self.listdir("/sys/devices/system/cpu"):
            m = re.fullmatch(r"cpu(\d+)", name)
            if m:
                cpus.append(int(m.group(1)))
        return sorted(cpus)

    def process_running(self, comm: str) -> bool:
        for pid in self.listdir("/proc"):
            if pid.isdigit() and (self.read1(f"/proc/{pid}/comm") or "") == comm:
                return True
        return False

"""check/plan/apply/revert round trip on a veth pair inside a network
namespace created here.  The tool runs under `ip netns exec`, so /sys/class/net
and /proc/sys/net are the namespace's; only per-interface and per-netns steps
are selected (--only), never host IRQs, governors or irqbalance."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(os.path.dirname(HERE), "sluice-tune")
ONLY = "channels,offload,xps,rps,sysctl"


def _why_skip():
    if os.geteuid() != 0:
        return "needs root (creates a network namespace)"
    if not shutil.which("ip"):
        return "needs iproute2 `ip`"
    return None


class NetnsRoundTrip(unittest.TestCase):
    def setUp(self):
        why = _why_skip()
        if why:
            print(f"\n  skipped: {why}", file=sys.stderr)
            self.skipTest(why)
        self.ns = f"sluice-tune-test-{os.getpid()}"
        self.tmp = tempfile.mkdtemp(prefix="sluice-tune-netns-")
        r = subprocess.run(["ip", "netns", "add", self.ns], capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest(f"cannot create netns: {r.stderr.strip()}")
        self.addCleanup(self._cleanup)
        self.sh("ip link add sva numtxqueues 2 numrxqueues 2 type veth peer name svb")
        self.sh("ip link set sva up && ip link set svb up")
        # a non-default starting point that apply must change and revert must restore
        self.sh("echo 3 > /sys/class/net/sva/queues/rx-0/rps_cpus")
        self.cpus = os.cpu_count() or 1
        self.workers = "0-1" if self.cpus >= 2 else "0"
        self.host_before = self.host_sysctls()

    def _cleanup(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def tearDown(self):
        pass  # cleanup registered with addCleanup runs even when setUp fails half-way

    @staticmethod
    def host_sysctls():
        vals = {}
        for p in ("net/core/rmem_max", "net/core/wmem_max", "net/ipv4/udp_rmem_min", "net/ipv4/udp_wmem_min"):
            try:
                with open("/proc/sys/" + p) as f:
                    vals[p] = f.read()
            except OSError:
                pass
        return vals

    def sh(self, cmd):
        r = subprocess.run(["ip", "netns", "exec", self.ns, "sh", "-c", cmd], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, f"{cmd}: {r.stderr}")
        return r.stdout

    def tool(self, *args):
        return subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, TOOL, *args],
                              capture_output=True, text=True)

    def read(self, path):
        return self.sh(f"cat {path}").strip()

    def snapshot(self):
        snap = {}
        for q in ("rx-0", "rx-1"):
            snap[q] = self.read(f"/sys/class/net/sva/queues/{q}/rps_cpus")
        for q in ("tx-0", "tx-1"):
            snap[q] = self.read(f"/sys/class/net/sva/queues/{q}/xps_cpus")
        for s in ("net/ipv4/udp_rmem_min", "net/ipv4/udp_wmem_min"):
            snap[s] = self.read(f"/proc/sys/{s}")
        if shutil.which("ethtool"):
            snap["k"] = self.sh("ethtool -k sva | grep -E '^(generic|large)-'")
            snap["l"] = self.sh("ethtool -l sva")
        return snap

    def test_round_trip(self):
        state = os.path.join(self.tmp, "state.json")
        common = ["--iface", "sva", "--workers", self.workers]
        r = self.tool("check", "--json", *common)
        self.assertIn(r.returncode, (0, 2), r.stderr)
        data = json.loads(r.stdout)
        items = {i["item"]: i for i in data["items"]}
        self.assertEqual(items["nic sva rps"]["status"], "WARN")
        self.assertIn("veth", items["nic sva driver"]["detail"] + ("" if shutil.which("ethtool") else "veth"))

        r = self.tool("plan", *common, "--only", ONLY)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("echo 0 > /sys/class/net/sva/queues/rx-0/rps_cpus", r.stdout)
        self.assertIn("/sys/class/net/sva/queues/tx-0/xps_cpus", r.stdout)
        self.assertNotIn("/proc/irq/", r.stdout)

        before = self.snapshot()
        r = self.tool("apply", *common, "--only", ONLY, "--state", state)   # dry run
        self.assertIn("dry run", r.stdout)
        self.assertEqual(self.snapshot(), before)
        self.assertFalse(os.path.exists(state))

        r = self.tool("apply", "--yes", *common, "--only", ONLY, "--state", state)
        out = r.stdout
        self.assertTrue(os.path.exists(state), out + r.stderr)
        # read-only-in-netns sysctls (rmem_max on new kernels) fail per item, not fatally
        self.assertIn("applied:", out)
        self.assertEqual(self.read("/sys/class/net/sva/queues/rx-0/rps_cpus").strip("0,") or "0", "0")
        self.assertEqual(self.read("/sys/class/net/sva/queues/tx-0/xps_cpus").lstrip("0,"), "1")
        if self.cpus >= 2:
            self.assertEqual(self.read("/sys/class/net/sva/queues/tx-1/xps_cpus").lstrip("0,"), "2")
        self.assertEqual(self.read("/proc/sys/net/ipv4/udp_rmem_min"), "16384")
        if shutil.which("ethtool"):
            self.assertIn("generic-receive-offload: on", self.sh("ethtool -k sva"))
        after = self.snapshot()

        r = self.tool("apply", "--yes", *common, "--only", ONLY, "--state", state)
        self.assertIn("applied: 0 changed", r.stdout, r.stdout)
        self.assertEqual(self.snapshot(), after)

        r = self.tool("revert", "--state", state)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.snapshot(), before)
        self.assertFalse(os.path.exists(state))
        self.assertEqual(self.host_sysctls(), self.host_before, "host sysctls must not change")


if __name__ == "__main__":
    unittest.main()

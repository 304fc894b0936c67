import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from sluice_tune import cpus, nic, parsers  # noqa: E402
from fixturetree import FIXTURES  # noqa: E402


def fx(*parts):
    with open(os.path.join(FIXTURES, *parts)) as f:
        return f.read()


class CpuTests(unittest.TestCase):
    def test_lists(self):
        self.assertEqual(cpus.parse_cpulist("2-5"), [2, 3, 4, 5])
        self.assertEqual(cpus.parse_cpulist("5,4,2-3", keep_order=True), [5, 4, 2, 3])
        self.assertEqual(cpus.parse_cpulist("0-7:2/4"), [0, 1, 4, 5])
        self.assertEqual(cpus.parse_cpulist("domain,managed_irq,2-3"), [2, 3])
        self.assertEqual(cpus.format_cpulist([0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11")
        with self.assertRaises(cpus.CpuListError):
            cpus.parse_cpulist("2,2", keep_order=True)
        with self.assertRaises(cpus.CpuListError):
            cpus.parse_cpulist("5-2")

    def test_masks(self):
        self.assertEqual(cpus.parse_mask("00000000,0000000f"), {0, 1, 2, 3})
        self.assertEqual(cpus.format_mask({2}), "4")
        self.assertEqual(cpus.format_mask({33}), "2,00000000")
        self.assertEqual(cpus.parse_mask(cpus.format_mask({1, 40, 63})), {1, 40, 63})
        self.assertEqual(cpus.parse_mask("0"), set())


class InterruptsTests(unittest.TestCase):
    def test_ixgbe(self):
        irqs = parsers.parse_interrupts(fx("ixgbe", "interrupts.txt"))
        self.assertEqual(irqs[120].name, "eth0-TxRx-0")
        self.assertEqual(len(irqs[120].counts), 8)
        self.assertEqual(irqs[123].cpus_with_counts(), [3])
        self.assertEqual(irqs[9].name, "acpi")
        self.assertNotIn("LOC", irqs)

    def test_multi_action_name(self):
        irqs = parsers.parse_interrupts(fx("mlx5", "interrupts.txt"))
        self.assertEqual(irqs[27].name, "PCIe PME, pciehp")

    def test_queue_mapping_each_driver(self):
        cases = {
            # driver: (iface, bus, {queue: [(kind, irq)]}, other NIC irqs)
            "ixgbe": ("eth0", "0000:18:00.0", {0: [("txrx", 120)], 7: [("txrx", 127)]}, [128]),
            "mlx5": ("ens1f0np0", "0000:3b:00.0", {0: [("txrx", 97)], 3: [("txrx", 100)], 7: [("txrx", 104)]}, [96]),
            "ena": ("ens5", "0000:00:05.0", {0: [("txrx", 27)], 3: [("txrx", 30)]}, [26]),
            "virtio_net": ("eth0", "virtio1", {0: [("rx", 27), ("tx", 28)], 3: [("rx", 33), ("tx", 34)]}, [26]),
        }
        for drv, (iface, bus, want, other) in cases.items():
            with self.subTest(driver=drv):
                irqs = parsers.parse_interrupts(fx(drv, "interrupts.txt"))
                qirqs, others = nic.map_queue_irqs(iface, bus, irqs)
                for q, pairs in want.items():
                    got = sorted((x.kind, x.irq) for x in qirqs if x.queue == q)
                    self.assertEqual(got, sorted(pairs))
                self.assertEqual(others, other)
                # other devices' IRQs never map to this NIC
                self.assertFalse(any("nvme" in x.name or "async" in x.name for x in qirqs))

    def test_mlx5_other_port_not_mapped(self):
        irqs = parsers.parse_interrupts(fx("mlx5", "interrupts.txt"))
        qirqs, others = nic.map_queue_irqs("ens1f0np0", "0000:3b:00.0", irqs)
        self.assertNotIn(110, [q.irq for q in qirqs] + others)

    def test_ice_and_separate_rx_tx_names(self):
        text = ("           CPU0       CPU1\n"
                " 50:    1    0  IR-PCI-MSI 1-edge   ice-eth1-TxRx-0\n"
                " 51:    0    1  IR-PCI-MSI 2-edge   eth2-rx-0\n"
                " 52:    0    1  IR-PCI-MSI 3-edge   eth2-tx-0\n")
        irqs = parsers.parse_interrupts(text)
        q1, _ = nic.map_queue_irqs("eth1", None, irqs)
        self.assertEqual([(q.queue, q.kind, q.irq) for q in q1], [(0, "txrx", 50)])
        q2, _ = nic.map_queue_irqs("eth2", None, irqs)
        self.assertEqual(sorted((q.kind, q.irq) for q in q2), [("rx", 51), ("tx", 52)])

    def test_garbage(self):
        self.assertEqual(parsers.parse_interrupts(""), {})
        self.assertEqual(parsers.parse_interrupts("nonsense\n\x00 12: x"), {})


class EthtoolTests(unittest.TestCase):
    def test_channels(self):
        c = parsers.parse_channels(fx("ixgbe", "cmds", "ethtool_-l_eth0.txt"))
        self.assertEqual(c.max["combined"], 63)
        self.assertEqual(c.current["combined"], 8)
        self.assertEqual(c.current["other"], 1)
        m = parsers.parse_channels(fx("mlx5", "cmds", "ethtool_-l_ens1f0np0.txt"))
        self.assertIsNone(m.max["rx"])          # "n/a"
        self.assertEqual(m.current["combined"], 4)
        self.assertIsNone(parsers.parse_channels("netlink error: Operation not supported"))

    def test_rss(self):
        r = parsers.parse_rss(fx("ixgbe", "cmds", "ethtool_-x_eth0.txt"))
        self.assertEqual(r.rings, 8)
        self.assertEqual(len(r.table), 128)
        self.assertEqual(r.queues_used(), list(range(8)))
        self.assertEqual(r.hfunc, "toeplitz")
        self.assertIsNone(parsers.parse_rss(fx("virtio_net", "cmds", "ethtool_-x_eth0.txt")))

    def test_features(self):
        f = parsers.parse_features(fx("ixgbe", "cmds", "ethtool_-k_eth0.txt"))
        self.assertTrue(f["large-receive-offload"].on)
        self.assertTrue(f["generic-receive-offload"].on)
        self.assertTrue(f["highdma"].fixed)
        e = parsers.parse_features(fx("ena", "cmds", "ethtool_-k_ens5.txt"))
        self.assertFalse(e["generic-receive-offload"].on)
        self.assertTrue(e["large-receive-offload"].fixed)
        self.assertTrue(e["tx-udp-segmentation"].on)

    def test_rings(self):
        g = parsers.parse_rings(fx("ena", "cmds", "ethtool_-g_ens5.txt"))
        self.assertEqual(g["max"]["rx"], 16384)
        self.assertEqual(g["current"]["rx"], 1024)
        self.assertIsNone(g["current"]["rx mini"])

    def test_driver_info_and_misc(self):
        i = parsers.parse_driver_info(fx("mlx5", "cmds", "ethtool_-i_ens1f0np0.txt"))
        self.assertEqual(i["driver"], "mlx5_core")
        self.assertEqual(i["bus-info"], "0000:3b:00.0")
        c = parsers.parse_cmdline("ro isolcpus=2-5 nohz_full=2-5 -- isolcpus=9")
        self.assertEqual(c["isolcpus"], "2-5")
        self.assertEqual(parsers.parse_kernel_version("6.8.0-45-generic"), (6, 8, 0))
        self.assertIsNone(parsers.parse_kernel_version("weird"))


if __name__ == "__main__":
    unittest.main()

"""sluice-tune: host readiness check and NIC-queue/IRQ/core plan for the Sluice dataplane."""

__version__ = "0.1.0"

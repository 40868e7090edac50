"""Fixtures of the device-port suites: a loopback notification receiver and the notifier pump."""

from tests.support.subscriptions import pump, receiver

__all__ = ["pump", "receiver"]

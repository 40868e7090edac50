"""Composes the running process: the device and operator listeners, the engine and the notifier."""

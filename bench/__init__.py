"""Benchmarks: scripts that print figures. Run them on purpose; they are not part of the test suite."""

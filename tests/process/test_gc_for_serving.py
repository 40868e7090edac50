"""A serving process keeps the cyclic garbage collector off its hot path (process/run.py)."""

from __future__ import annotations

import gc

from gridshare.process.run import collect_garbage_for_serving


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    thresholds = gc.get_threshold()
    tracked_before = len(gc.get_objects())
    try:
        collect_garbage_for_serving()
        # what exists at start-up is never walked again by a collection
        assert gc.get_freeze_count() >= tracked_before * 0.9
        assert len(gc.get_objects()) < tracked_before * 0.1
        assert gc.get_threshold()[0] > 10 * thresholds[0]
        # garbage made while serving is still collected
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)

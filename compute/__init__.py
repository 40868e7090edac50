"""Utility-scale computation: one network's envelopes as a pure task, run on a Dask distributed cluster.

`task` defines the unit of work (everything one network's computation needs, shipped to the worker,
and what comes back); `outcome` says per network whether it was computed or why not; `cluster` runs
batches of them on an in-process cluster or a real `dask scheduler` (docs/utility-scale.md). Nothing
here reads or writes the store: the publisher does, alone (one publisher keeps publication atomic).
"""

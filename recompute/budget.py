"""Run the envelope computation within a time budget, without ever waiting past it.

The computation runs in a worker thread; if it has not finished when the budget is spent the caller
gets BudgetExceeded at once and the result, whenever it comes, is dropped (inputs read before the
budget started are too old to publish by then). Python cannot stop a thread, so while an abandoned
computation is still running no new one starts: the next run fails fast instead of piling up work
on a machine that is already behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class BudgetExceeded(TimeoutError):
    """The computation did not finish within its budget."""


class BudgetRunner:
    def __init__(self) -> None:
        self._abandoned: threading.Thread | None = None

    def run(self, fn: Callable[[], T], budget_s: float) -> T:
        if self._abandoned is not None and self._abandoned.is_alive():
            raise BudgetExceeded("an earlier computation is still running past its budget")
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=target, name="envelope-compute", daemon=True)
        worker.start()
        worker.join(budget_s)
        if worker.is_alive():
            self._abandoned = worker
            raise BudgetExceeded(f"the computation ran past its {budget_s:g} s budget")
        if "error" in box:
            raise box["error"]
        return box["value"]

"""A device's write that waits for the store never holds up the other devices' answers.

A serving process answers every device connection from one event loop. A route that waited for the
store on that loop (PostgreSQL round trips, or SQLite's write lock while another serving process or an
operator commits) would stall every other device's poll for as long as it waited. Here the write lock is
held from another connection, as a long commit elsewhere would hold it: a device's write then waits,
while a poll from another device is still answered at once, and the write completes as soon as the lock
is let go. Both databases, real mTLS.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import text

from tests.support.bodies import SEP_XML, der_capability, log_event, mirror_usage_point
from tests.support.engine import device_with_everything
from tests.support.servers import T0, RunningServer

#: Long enough for the write to reach the store and start waiting before the poll is sent.
SETTLE_S = 0.5
#: A poll that takes longer than this was held up by the waiting write (a cached poll takes milliseconds).
POLL_TIMEOUT_S = 3.0


@contextmanager
def store_write_lock_held(server: RunningServer) -> Iterator[None]:
    """Another connection holds what the device's write needs until the block ends."""
    url = server.ctx.engine.url
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(url.database), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # SQLite's write lock, as a committing writer holds it
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with server.ctx.engine.connect() as pg:
        pg.execute(text("LOCK TABLE mirror_usage_point, log_event, der IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            pg.rollback()


def _new_mirror(server: RunningServer, c: httpx.Client, site_id: int) -> httpx.Response:
    me = server.pki.client("device-1")
    return c.post(
        "/mup", content=mirror_usage_point("33" * 16, me.lfdi, "44" * 16, T0 - 120, 7), headers=SEP_XML
    )


def _log_event(server: RunningServer, c: httpx.Client, site_id: int) -> httpx.Response:
    return c.post(f"/edev/{site_id}/lel", content=log_event(T0 - 5, 3), headers=SEP_XML)


def _der_capability(server: RunningServer, c: httpx.Client, site_id: int) -> httpx.Response:
    return c.put(f"/edev/{site_id}/der/1/dercap", content=der_capability(70, 2), headers=SEP_XML)


Write = Callable[[RunningServer, httpx.Client, int], httpx.Response]


@pytest.mark.parametrize(
    ("write", "expected"),
    [(_new_mirror, 201), (_log_event, 201), (_der_capability, 204)],
    ids=["MirrorUsagePoint", "LogEvent", "DERCapability"],
)
def test_a_write_waiting_for_the_store_does_not_hold_up_other_devices(
    server: RunningServer, write: Write, expected: int
) -> None:
    site_id, _, _ = device_with_everything(server)
    server.register("device-2")
    with server.client("device-2") as other:
        assert other.get("/dcap").status_code == 200  # now in the response cache

        answers: list[httpx.Response | BaseException] = []

        def device_1_writes() -> None:
            try:
                with server.client("device-1") as c:
                    answers.append(write(server, c, site_id))
            except BaseException as exc:  # reported by the assertion below
                answers.append(exc)

        with store_write_lock_held(server):
            writer = threading.Thread(target=device_1_writes)
            writer.start()
            time.sleep(SETTLE_S)
            started = time.monotonic()
            poll = other.get("/dcap", timeout=POLL_TIMEOUT_S)
            polled_s = time.monotonic() - started
            assert poll.status_code == 200
            assert not answers, "the write did not wait for the store: the test proves nothing"
        writer.join(timeout=30)

    assert polled_s < POLL_TIMEOUT_S
    assert len(answers) == 1
    answer = answers[0]
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == expected, answer.text

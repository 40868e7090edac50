"""A device's routine reports answered in the raw-ASGI front: no framework, no thread hop, no read.

Readings (a MirrorMeterReading post every postRate) and Responses (received, started, completed for
each control) are most of what a fleet writes; a device also re-posts its unchanged MirrorUsagePoint,
usually with a reading, at every discovery. Once a device's report has been checked against the
store by its route, the check is remembered (server/shared/check_cache.py) until what it read
changes; the next report from the same client is checked against that memory with the same rules
(server/shared/reports.py): the body parsed and validated against the schema, its times against the
clock, its MirrorMeterReadings or subject against the remembered check. Its rows then go to the
group-commit writer (server/shared/batched_writes.py) and the 201 is sent only after the transaction
holding them has committed, as on the route. Anything else (no current check, a body that does not
pass, a new MirrorMeterReading) is answered by the application, which explains refusals.

No read-your-writes wait (ChangeFeed.sync): a report changes no cached body, only rows nothing
cached shows and the activity counter.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from gridshare.server.shared import reports
from gridshare.server.shared.batched_writes import NOT_STORED_RETRY_AFTER_S, ReportNotStored, commit
from gridshare.server.shared.context import AppContext
from gridshare.server.shared.render_cache import Headers, VersionsOf
from gridshare.server.wire import decode, hrefs
from gridshare.server.wire.xmlio import parse_body
from gridshare.store.group_commit import InsertedId, Inserts
from gridshare.store.scope import ClientScope

#: The reports this front answers, by resource name (POST only).
RESOURCES: dict[str, hrefs.Href] = {
    h.resource: h for h in (hrefs.MUP_T, hrefs.MUP_LIST_T, hrefs.RESPONSE_LIST_T)
}

#: (status, headers, body) of an answer.
Answer = tuple[int, Headers, bytes]
#: A checked report: its rows for the report writer, and its Location from the keys they were given.
Job = tuple[Inserts, Callable[[list[InsertedId]], str]]


def _created(location: str) -> Answer:
    return 201, ((b"location", location.encode()), (b"content-length", b"0")), b""


def _not_stored(reason: str) -> Answer:
    body = reason.encode()
    return (
        503,
        (
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"retry-after", str(NOT_STORED_RETRY_AFTER_S).encode()),
            (b"content-length", str(len(body)).encode()),
        ),
        body,
    )


class FastReports:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def answer(
        self,
        resource: str,
        path: str,
        client: ClientScope,
        generation: int,
        versions: VersionsOf,
        body: bytes,
    ) -> Answer | None:
        """The answer to this report, once stored; None: the application must answer it."""
        params = RESOURCES[resource].match(path)
        if params is None:
            return None
        try:
            if resource == hrefs.MUP_T.resource:
                job = self._reading(int(params["mup_id"]), client, generation, versions, body)
            elif resource == hrefs.MUP_LIST_T.resource:
                job = self._mirror(client, generation, versions, body)
            else:
                job = self._response(client, generation, versions, body)
        except Exception:  # anything unusual: the application answers it, with its reasons
            return None
        if job is None:
            return None
        inserts, location = job
        try:
            keys = await commit(self.ctx, inserts)
        except ReportNotStored as exc:
            return _not_stored(str(exc))
        return _created(location(keys))

    def _parse(self, body: bytes, *expected: str) -> Any:
        settings = self.ctx.settings
        return parse_body(
            body, expected=expected, max_bytes=settings.max_body_bytes, max_depth=settings.max_xml_depth
        )

    def _reading(
        self, mup_id: int, client: ClientScope, generation: int, versions: VersionsOf, body: bytes
    ) -> Job | None:
        known = self.ctx.checks.get((*reports.reading_key(mup_id), client), generation, versions)
        if not isinstance(known, dict):
            return None
        readings = decode.meter_readings(self._parse(body, "MirrorMeterReading", "MirrorMeterReadingList"))
        rows = reports.reading_rows(known, readings, self.ctx.now_s(), self.ctx.settings)
        return None if rows is None else (reports.readings_insert(rows), partial(_fixed, hrefs.mup(mup_id)))

    def _mirror(self, client: ClientScope, generation: int, versions: VersionsOf, body: bytes) -> Job | None:
        """A device re-posting its unchanged MirrorUsagePoint (every discovery), readings included."""
        mirror = decode.mirror_usage_point(self._parse(body, "MirrorUsagePoint"))
        key = reports.mirror_key(mirror.device_lfdi, mirror.mrid)
        known = self.ctx.checks.get((*key, client), generation, versions)
        if not isinstance(known, reports.MirrorCheck) or known.fields != reports.mirror_fields(mirror):
            return None
        rows = reports.reading_rows(known.known, mirror.meter_readings, self.ctx.now_s(), self.ctx.settings)
        if rows is None:
            return None
        return reports.readings_insert(rows), partial(_fixed, hrefs.mup(known.mup_id))

    def _response(
        self, client: ClientScope, generation: int, versions: VersionsOf, body: bytes
    ) -> Job | None:
        report = decode.response(self._parse(body, "Response", "DERControlResponse"))
        if report.status is None or report.status not in reports.KNOWN_RESPONSE_STATUS:
            return None
        key = reports.response_key(report.end_device_lfdi, report.subject_mrid)
        subject = self.ctx.checks.get((*key, client), generation, versions)
        if not isinstance(subject, reports.ResponseSubject):
            return None
        fields = reports.response_fields(subject, report, self.ctx.now_s())
        return reports.response_insert(fields), _response_location


# A report's Location, from the keys its insert was given (known once its batch has committed).


def _fixed(location: str, _keys: list[InsertedId]) -> str:
    return location


def _response_location(keys: list[InsertedId]) -> str:
    (key,) = keys
    return hrefs.response(int(key))

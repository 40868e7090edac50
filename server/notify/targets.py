"""Which resources can be subscribed to, recognised from the href a client names in subscribedResource.

The set is what cactus-client can receive in a Notification (its xsi:type table) and we serve:
EndDeviceList, FunctionSetAssignmentsList, DERProgramList, DERControlList (and the active one, which is a
DERControlList too), DefaultDERControl and the DER documents whose schema type is subscribable; and from
the Metering function set the schema's subscribable lists (UsagePointList, MeterReadingList,
ReadingSetList, ReadingList) and a MeterReading's newest Reading.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import urlsplit


class Kind(enum.StrEnum):
    end_device_list = "EndDeviceList"
    fsa_list = "FunctionSetAssignmentsList"
    program_list = "DERProgramList"
    control_list = "DERControlList"
    active_control_list = "ActiveDERControlList"
    default_control = "DefaultDERControl"
    der_document = "DERDocument"
    usage_point_list = "UsagePointList"
    meter_reading_list = "MeterReadingList"
    reading_set_list = "ReadingSetList"
    reading_list = "ReadingList"
    latest_reading = "Reading"

    @property
    def is_list(self) -> bool:
        return self not in (Kind.default_control, Kind.der_document, Kind.latest_reading)


@dataclass(frozen=True)
class Target:
    kind: Kind
    site_id: int = 0
    fsa_id: int = 0
    program_id: int = 0
    der_index: int = 0
    doc: str = ""
    mup_id: int = 0
    mmr_id: int = 0
    day_s: int = 0


_ID = r"(\d{1,9})"
_TIME = r"(\d{1,12})"
_PATTERNS: tuple[tuple[re.Pattern[str], Kind, tuple[str, ...]], ...] = (
    (re.compile(r"^/edev$"), Kind.end_device_list, ()),
    (re.compile(rf"^/edev/{_ID}/fsa$"), Kind.fsa_list, ("site_id",)),
    (re.compile(rf"^/edev/{_ID}/fsa/{_ID}/derp$"), Kind.program_list, ("site_id", "fsa_id")),
    (re.compile(rf"^/edev/{_ID}/derp/{_ID}/derc$"), Kind.control_list, ("site_id", "program_id")),
    (re.compile(rf"^/edev/{_ID}/derp/{_ID}/actderc$"), Kind.active_control_list, ("site_id", "program_id")),
    (re.compile(rf"^/edev/{_ID}/derp/{_ID}/dderc$"), Kind.default_control, ("site_id", "program_id")),
    (
        re.compile(rf"^/edev/{_ID}/der/{_ID}/(derg|ders|dera)$"),
        Kind.der_document,
        ("site_id", "der_index", "doc"),
    ),
    (re.compile(r"^/upt$"), Kind.usage_point_list, ()),
    (re.compile(rf"^/upt/{_ID}/mr$"), Kind.meter_reading_list, ("mup_id",)),
    (re.compile(rf"^/upt/{_ID}/mr/{_ID}/rs$"), Kind.reading_set_list, ("mup_id", "mmr_id")),
    (re.compile(rf"^/upt/{_ID}/mr/{_ID}/rs/{_TIME}/r$"), Kind.reading_list, ("mup_id", "mmr_id", "day_s")),
    (re.compile(rf"^/upt/{_ID}/mr/{_ID}/r$"), Kind.latest_reading, ("mup_id", "mmr_id")),
)


def parse(href: str) -> Target | None:
    """The subscribable resource `href` names, or None.

    A query string is ignored (2030.5 SubscriptionBase: servers SHALL ignore one on a list), and an
    absolute URI is reduced to its path so either form of our own hrefs is understood.
    """
    path = urlsplit(href.strip()).path.rstrip("/") or "/"
    for pattern, kind, names in _PATTERNS:
        match = pattern.match(path)
        if match is not None:
            values = {
                name: (v if name == "doc" else int(v)) for name, v in zip(names, match.groups(), strict=True)
            }
            return Target(kind, **values)  # type: ignore[arg-type]
    return None

"""Which resources can be subscribed to, recognised from the href a client names in subscribedResource.

The set is what cactus-client can receive in a Notification (its xsi:type table) and we serve:
EndDeviceList, FunctionSetAssignmentsList, DERProgramList, DERControlList (and the active one, which is a
DERControlList too), DefaultDERControl and the DER documents whose schema type is subscribable; and from
the Metering function set the schema's subscribable lists (UsagePointList, MeterReadingList,
ReadingSetList, ReadingList) and a MeterReading's newest Reading.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit

from gridshare.server.wire import hrefs


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


#: Subscribable resources by their URI template (server/wire/hrefs.py), checked in this order.
_PATTERNS: tuple[tuple[hrefs.Href, Kind], ...] = (
    (hrefs.EDEV_LIST_T, Kind.end_device_list),
    (hrefs.FSA_LIST_T, Kind.fsa_list),
    (hrefs.DERP_LIST_T, Kind.program_list),
    (hrefs.DERC_LIST_T, Kind.control_list),
    (hrefs.ACTIVE_DERC_LIST_T, Kind.active_control_list),
    (hrefs.DEFAULT_DERC_T, Kind.default_control),
    (hrefs.DER_DOC_T, Kind.der_document),
    (hrefs.UPT_LIST_T, Kind.usage_point_list),
    (hrefs.METER_READING_LIST_T, Kind.meter_reading_list),
    (hrefs.READING_SET_LIST_T, Kind.reading_set_list),
    (hrefs.READING_LIST_T, Kind.reading_list),
    (hrefs.LATEST_READING_T, Kind.latest_reading),
)
#: DER documents whose schema type is subscribable (DERCapability is a plain Resource).
_SUBSCRIBABLE_DOCS = frozenset({"derg", "ders", "dera"})


def parse(href: str) -> Target | None:
    """The subscribable resource `href` names, or None.

    A query string is ignored (2030.5 SubscriptionBase: servers SHALL ignore one on a list), and an
    absolute URI is reduced to its path so either form of our own hrefs is understood.
    """
    path = urlsplit(href.strip()).path.rstrip("/") or "/"
    for template, kind in _PATTERNS:
        params = template.match(path)
        if params is None or params.get("doc", "derg") not in _SUBSCRIBABLE_DOCS:
            continue
        values = {name: (v if name == "doc" else int(v)) for name, v in params.items()}
        return Target(kind, **values)  # type: ignore[arg-type]
    return None

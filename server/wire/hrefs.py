"""Every href the server emits or accepts: one table of URI templates (IEEE 2030.5 resources by path).

Each template is written once, in FastAPI's path syntax, and everything else derives from it: the routes
register `X.path`, the encoder and notifier build hrefs with the functions below, the subscription
parser and the fast path match with `X.match`, and request metrics classify by `SHAPES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: What a path parameter may look like: database ids fit 9 digits here (larger ones name nothing), a
#: ReadingSet's day is an epoch second, a DER document is one of the four short names.
_PARAM_PATTERNS = {"day_s": r"\d{1,12}", "doc": r"[a-z]+", "control_id": r"[^/]+"}
_ID_PATTERN = r"\d{1,9}"
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Href:
    """One resource's URI template, e.g. `/edev/{site_id}/derp/{program_id}/derc`."""

    path: str
    #: The 2030.5 resource it names ("" for a route-only template such as a DER document by name).
    resource: str = ""
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = _PARAM.sub(lambda m: f"(?P<{m[1]}>{_PARAM_PATTERNS.get(m[1], _ID_PATTERN)})", self.path)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    def __call__(self, **params: object) -> str:
        return self.path.format(**params)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return found.groupdict() if found is not None else None

    @property
    def shape(self) -> str:
        """The path with every parameter and number as `*` (what request metrics group by)."""
        return "/".join("*" if p.isdigit() or p.startswith("{") else p for p in self.path.split("/"))


DCAP_T = Href("/dcap", "DeviceCapability")
TIME_T = Href("/tm", "Time")
SELF_DEVICE_T = Href("/sdev", "SelfDevice")
SELF_DEVICE_INFO_T = Href("/sdev/di", "DeviceInformation")
EDEV_LIST_T = Href("/edev", "EndDeviceList")
EDEV_T = Href("/edev/{site_id}", "EndDevice")
REGISTRATION_T = Href("/edev/{site_id}/rg", "Registration")
CONNECTION_POINT_T = Href("/edev/{site_id}/cp", "ConnectionPoint")
FSA_LIST_T = Href("/edev/{site_id}/fsa", "FunctionSetAssignmentsList")
FSA_T = Href("/edev/{site_id}/fsa/{fsa_id}", "FunctionSetAssignments")
DERP_LIST_T = Href("/edev/{site_id}/fsa/{fsa_id}/derp", "DERProgramList")
DERP_T = Href("/edev/{site_id}/derp/{program_id}", "DERProgram")
DERC_LIST_T = Href("/edev/{site_id}/derp/{program_id}/derc", "DERControlList")
DERC_T = Href("/edev/{site_id}/derp/{program_id}/derc/{control_id}", "DERControl")
ACTIVE_DERC_LIST_T = Href("/edev/{site_id}/derp/{program_id}/actderc", "ActiveDERControlList")
DEFAULT_DERC_T = Href("/edev/{site_id}/derp/{program_id}/dderc", "DefaultDERControl")
CURVE_LIST_T = Href("/edev/{site_id}/derp/{program_id}/dc", "DERCurveList")
CURVE_T = Href("/edev/{site_id}/derp/{program_id}/dc/{curve_id}", "DERCurve")
DER_LIST_T = Href("/edev/{site_id}/der", "DERList")
DER_T = Href("/edev/{site_id}/der/{der_index}", "DER")
DER_DOC_T = Href("/edev/{site_id}/der/{der_index}/{doc}")
#: The four DER documents by their short names (2030.5 §10.10 DER).
DER_DOCS = {"dercap": "DERCapability", "derg": "DERSettings", "ders": "DERStatus", "dera": "DERAvailability"}
LOG_EVENT_LIST_T = Href("/edev/{site_id}/lel", "LogEventList")
LOG_EVENT_T = Href("/edev/{site_id}/lel/{event_id}", "LogEvent")
SUBSCRIPTION_LIST_T = Href("/edev/{edev_id}/sub", "SubscriptionList")
SUBSCRIPTION_T = Href("/edev/{edev_id}/sub/{subscription_id}", "Subscription")
MUP_LIST_T = Href("/mup", "MirrorUsagePointList")
MUP_T = Href("/mup/{mup_id}", "MirrorUsagePoint")
#: Responses to DERControls go to one ResponseSet (2030.5 §12.1: replyTo names the ResponseList).
RESPONSE_LIST_T = Href("/rsps/1/rsp", "ResponseList")
RESPONSE_T = Href("/rsps/1/rsp/{response_id}", "Response")
#: Metering (2030.5 §10.4): read-only views of what clients mirror; /upt/{n} is /mup/{n}'s UsagePoint.
UPT_LIST_T = Href("/upt", "UsagePointList")
UPT_T = Href("/upt/{mup_id}", "UsagePoint")
METER_READING_LIST_T = Href("/upt/{mup_id}/mr", "MeterReadingList")
METER_READING_T = Href("/upt/{mup_id}/mr/{mmr_id}", "MeterReading")
READING_TYPE_T = Href("/upt/{mup_id}/mr/{mmr_id}/rt", "ReadingType")
#: The MeterReading's ReadingLink: always its newest Reading, at one stable href.
LATEST_READING_T = Href("/upt/{mup_id}/mr/{mmr_id}/r", "Reading")
READING_SET_LIST_T = Href("/upt/{mup_id}/mr/{mmr_id}/rs", "ReadingSetList")
READING_SET_T = Href("/upt/{mup_id}/mr/{mmr_id}/rs/{day_s}", "ReadingSet")
READING_LIST_T = Href("/upt/{mup_id}/mr/{mmr_id}/rs/{day_s}/r", "ReadingList")
READING_T = Href("/upt/{mup_id}/mr/{mmr_id}/rs/{day_s}/r/{reading_id}", "Reading")

TABLE: tuple[Href, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Href))

#: Resource name by path shape (ids as `*`), for request metrics (server/shared/resources.py).
SHAPES: dict[str, str] = {h.shape: h.resource for h in TABLE if h.resource}
for _short, _name in DER_DOCS.items():
    SHAPES[DER_DOC_T.shape.rsplit("/", 1)[0] + "/" + _short] = _name

DCAP = DCAP_T.path
TIME = TIME_T.path
EDEV_LIST = EDEV_LIST_T.path
MUP_LIST = MUP_LIST_T.path
SELF_DEVICE = SELF_DEVICE_T.path
SELF_DEVICE_INFO = SELF_DEVICE_INFO_T.path
UPT_LIST = UPT_LIST_T.path
DERC_RESPONSES = RESPONSE_LIST_T.path
AGGREGATOR_EDEV_ID = 0


def edev(site_id: int) -> str:
    return EDEV_T(site_id=site_id)


def registration(site_id: int) -> str:
    return REGISTRATION_T(site_id=site_id)


def connection_point(site_id: int) -> str:
    return CONNECTION_POINT_T(site_id=site_id)


def fsa_list(site_id: int) -> str:
    return FSA_LIST_T(site_id=site_id)


def fsa(site_id: int, fsa_id: int) -> str:
    return FSA_T(site_id=site_id, fsa_id=fsa_id)


def derp_list(site_id: int, fsa_id: int) -> str:
    return DERP_LIST_T(site_id=site_id, fsa_id=fsa_id)


def derp(site_id: int, program_id: int) -> str:
    return DERP_T(site_id=site_id, program_id=program_id)


def derc_list(site_id: int, program_id: int) -> str:
    return DERC_LIST_T(site_id=site_id, program_id=program_id)


def derc(site_id: int, program_id: int, control_id: int | str) -> str:
    return DERC_T(site_id=site_id, program_id=program_id, control_id=control_id)


def active_derc_list(site_id: int, program_id: int) -> str:
    return ACTIVE_DERC_LIST_T(site_id=site_id, program_id=program_id)


def default_derc(site_id: int, program_id: int) -> str:
    return DEFAULT_DERC_T(site_id=site_id, program_id=program_id)


def curve_list(site_id: int, program_id: int) -> str:
    return CURVE_LIST_T(site_id=site_id, program_id=program_id)


def curve(site_id: int, program_id: int, curve_id: int) -> str:
    return CURVE_T(site_id=site_id, program_id=program_id, curve_id=curve_id)


def der_list(site_id: int) -> str:
    return DER_LIST_T(site_id=site_id)


def der(site_id: int, der_index: int) -> str:
    return DER_T(site_id=site_id, der_index=der_index)


def der_doc(site_id: int, der_index: int, doc: str) -> str:
    return DER_DOC_T(site_id=site_id, der_index=der_index, doc=doc)


def log_event_list(site_id: int) -> str:
    return LOG_EVENT_LIST_T(site_id=site_id)


def log_event(site_id: int, event_id: int) -> str:
    return LOG_EVENT_T(site_id=site_id, event_id=event_id)


def mup(mup_id: int) -> str:
    return MUP_T(mup_id=mup_id)


def response(response_id: int) -> str:
    return RESPONSE_T(response_id=response_id)


def subscription_list(edev_id: int) -> str:
    return SUBSCRIPTION_LIST_T(edev_id=edev_id)


def subscription(edev_id: int, subscription_id: int) -> str:
    return SUBSCRIPTION_T(edev_id=edev_id, subscription_id=subscription_id)


def upt(mup_id: int) -> str:
    return UPT_T(mup_id=mup_id)


def meter_reading_list(mup_id: int) -> str:
    return METER_READING_LIST_T(mup_id=mup_id)


def meter_reading(mup_id: int, mmr_id: int) -> str:
    return METER_READING_T(mup_id=mup_id, mmr_id=mmr_id)


def reading_type(mup_id: int, mmr_id: int) -> str:
    return READING_TYPE_T(mup_id=mup_id, mmr_id=mmr_id)


def latest_reading(mup_id: int, mmr_id: int) -> str:
    return LATEST_READING_T(mup_id=mup_id, mmr_id=mmr_id)


def reading_set_list(mup_id: int, mmr_id: int) -> str:
    return READING_SET_LIST_T(mup_id=mup_id, mmr_id=mmr_id)


def reading_set(mup_id: int, mmr_id: int, day_start_s: int) -> str:
    return READING_SET_T(mup_id=mup_id, mmr_id=mmr_id, day_s=day_start_s)


def reading_list(mup_id: int, mmr_id: int, day_start_s: int) -> str:
    return READING_LIST_T(mup_id=mup_id, mmr_id=mmr_id, day_s=day_start_s)


def reading(mup_id: int, mmr_id: int, day_start_s: int, reading_id: int) -> str:
    return READING_T(mup_id=mup_id, mmr_id=mmr_id, day_s=day_start_s, reading_id=reading_id)

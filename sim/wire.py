"""The client's side of the wire: read the 2030.5 resources a device polls, write the bodies it posts.

Deliberately independent of `server/wire/`: a simulated device must see only what a real one sees,
so a server that renders something wrong shows up here instead of being read back by its own code.
Element order in the bodies follows the XSD sequences (csipaus elements after the standard ones).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lxml import etree

from gridshare.sim.events import ControlBase, Event

SEP = "urn:ieee:std:2030.5:ns"
CSIP = "https://csipaus.org/ns"
NS = {"s": SEP, "c": CSIP}
MEDIA_TYPE = "application/sep+xml"


def parse(body: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(body, parser)


def _text(el: etree._Element, path: str) -> str | None:
    return el.findtext(path, namespaces=NS)


def _int(el: etree._Element, path: str, default: int = 0) -> int:
    value = _text(el, path)
    return default if value is None else int(value)


def _href(el: etree._Element, path: str) -> str | None:
    found = el.find(path, NS)
    return None if found is None else found.get("href")


def _power_w(el: etree._Element | None) -> float | None:
    if el is None:
        return None
    return int(_text(el, "s:value") or 0) * 10.0 ** int(_text(el, "s:multiplier") or 0)


def poll_rate_s(el: etree._Element, default: int) -> int:
    value = el.get("pollRate")
    return int(value) if value else default


def list_counts(el: etree._Element) -> tuple[int, int]:
    """(all, results) of a list resource."""
    return int(el.get("all", "0")), int(el.get("results", "0"))


@dataclass(frozen=True)
class DeviceCapability:
    poll_rate_s: int
    edev_list: str
    mup_list: str | None
    time: str | None


def device_capability(el: etree._Element) -> DeviceCapability:
    return DeviceCapability(
        poll_rate_s=poll_rate_s(el, 900),
        edev_list=_href(el, "s:EndDeviceListLink") or "/edev",
        mup_list=_href(el, "s:MirrorUsagePointListLink"),
        time=_href(el, "s:TimeLink"),
    )


@dataclass(frozen=True)
class EndDevice:
    href: str
    lfdi: str
    fsa_list: str | None
    connection_point: str | None
    post_rate_s: int | None


def end_device(el: etree._Element) -> EndDevice:
    post = _text(el, "s:postRate")
    return EndDevice(
        href=el.get("href", ""),
        lfdi=(_text(el, "s:lFDI") or "").upper(),
        fsa_list=_href(el, "s:FunctionSetAssignmentsListLink"),
        connection_point=_href(el, "c:ConnectionPointLink"),
        post_rate_s=int(post) if post else None,
    )


@dataclass(frozen=True)
class MirrorUsagePoint:
    href: str
    post_rate_s: int | None


def mirror_usage_point(el: etree._Element) -> MirrorUsagePoint:
    """A MirrorUsagePoint as a device reads it back: its postRate says how often to post readings."""
    post = _text(el, "s:postRate")
    return MirrorUsagePoint(href=el.get("href", ""), post_rate_s=int(post) if post else None)


def end_devices(el: etree._Element) -> list[EndDevice]:
    return [end_device(d) for d in el.findall("s:EndDevice", NS)]


def fsa_program_lists(el: etree._Element) -> list[str]:
    """DERProgramList hrefs of every FunctionSetAssignments in a list."""
    return [h for f in el.findall("s:FunctionSetAssignments", NS) if (h := _href(f, "s:DERProgramListLink"))]


@dataclass(frozen=True)
class Program:
    href: str
    primacy: int
    control_list: str
    default_control: str | None


def programs(el: etree._Element) -> list[Program]:
    out = []
    for p in el.findall("s:DERProgram", NS):
        derc = _href(p, "s:DERControlListLink")
        if derc is None:
            continue
        out.append(
            Program(p.get("href", ""), _int(p, "s:primacy"), derc, _href(p, "s:DefaultDERControlLink"))
        )
    return out


def control_base(el: etree._Element | None) -> ControlBase:
    if el is None:
        return ControlBase()

    def flag(name: str) -> bool | None:
        value = _text(el, f"s:{name}")
        return None if value is None else value.strip().lower() in ("true", "1")

    return ControlBase(
        export_limit_w=_power_w(el.find("c:opModExpLimW", NS)),
        import_limit_w=_power_w(el.find("c:opModImpLimW", NS)),
        generation_limit_w=_power_w(el.find("c:opModGenLimW", NS)),
        load_limit_w=_power_w(el.find("c:opModLoadLimW", NS)),
        connect=flag("opModConnect"),
        energize=flag("opModEnergize"),
    )


def controls(el: etree._Element, program: str, primacy: int) -> list[Event]:
    out = []
    for c in el.findall("s:DERControl", NS):
        out.append(
            Event(
                mrid=_text(c, "s:mRID") or "",
                program=program,
                primacy=primacy,
                creation_s=_int(c, "s:creationTime"),
                start_s=_int(c, "s:interval/s:start"),
                duration_s=_int(c, "s:interval/s:duration"),
                status=_int(c, "s:EventStatus/s:currentStatus"),
                base=control_base(c.find("s:DERControlBase", NS)),
                randomize_start_s=_int(c, "s:randomizeStart"),
                randomize_duration_s=_int(c, "s:randomizeDuration"),
                response_required=int(c.get("responseRequired", "0"), 16),
                reply_to=c.get("replyTo"),
            )
        )
    return out


def default_control(el: etree._Element) -> ControlBase:
    return control_base(el.find("s:DERControlBase", NS))


# --- bodies ----------------------------------------------------------------------------------------


def mrid_for(*parts: object) -> str:
    """A stable 32-hex-digit mRID for a simulator-made resource (last 8 digits: PEN 0)."""
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:24].upper() + "00000000"


def end_device_body(sfdi: int, lfdi: str, changed_s: int, category: int = 0) -> bytes:
    """An EndDevice registration (a device's own, or one an aggregator registers for a site it manages)."""
    return (
        f'<EndDevice xmlns="{SEP}"><deviceCategory>{category:02X}</deviceCategory><lFDI>{lfdi}</lFDI>'
        f"<sFDI>{sfdi}</sFDI><changedTime>{changed_s}</changedTime></EndDevice>"
    ).encode()


def connection_point_body(nmi: str) -> bytes:
    return (
        f'<csipaus:ConnectionPoint xmlns:csipaus="{CSIP}" xmlns="{SEP}">'
        f"<csipaus:connectionPointId>{nmi}</csipaus:connectionPointId></csipaus:ConnectionPoint>"
    ).encode()


#: Site net active power, averaged over the post period: power (37), watts (38), reverse flow (19, export
#: positive), data qualifier 2 (average), as the engine's telemetry reader expects.
READING_TYPE = (
    "<ReadingType><accumulationBehaviour>12</accumulationBehaviour><commodity>1</commodity>"
    "<dataQualifier>2</dataQualifier><flowDirection>19</flowDirection>"
    "<intervalLength>{interval}</intervalLength><kind>37</kind><phase>0</phase>"
    "<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType>"
)


def _reading(start_s: int, duration_s: int, value_w: float) -> str:
    return (
        f"<Reading><timePeriod><duration>{duration_s}</duration><start>{start_s}</start></timePeriod>"
        f"<value>{round(value_w)}</value></Reading>"
    )


def mirror_usage_point_body(
    mrid: str, lfdi: str, mmr_mrid: str, post_rate_s: int, start_s: int, value_w: float
) -> bytes:
    """A MirrorUsagePoint for the site's connection point with its first net-power reading."""
    return (
        f'<MirrorUsagePoint xmlns="{SEP}"><mRID>{mrid}</mRID><description>site net power</description>'
        f"<roleFlags>49</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{mmr_mrid}</mRID>"
        f"<description>net active power</description>{_reading(start_s, post_rate_s, value_w)}"
        f"{READING_TYPE.format(interval=post_rate_s)}</MirrorMeterReading></MirrorUsagePoint>"
    ).encode()


def meter_reading_body(mmr_mrid: str, start_s: int, duration_s: int, value_w: float) -> bytes:
    return (
        f'<MirrorMeterReading xmlns="{SEP}"><mRID>{mmr_mrid}</mRID>'
        f"{_reading(start_s, duration_s, value_w)}</MirrorMeterReading>"
    ).encode()


def response_body(subject: str, lfdi: str, status: int, created_s: int) -> bytes:
    return (
        f'<DERControlResponse xmlns="{SEP}"><createdDateTime>{created_s}</createdDateTime>'
        f"<endDeviceLFDI>{lfdi}</endDeviceLFDI><status>{status}</status><subject>{subject}</subject>"
        f"</DERControlResponse>"
    ).encode()

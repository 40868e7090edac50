"""Server state -> 2030.5 XML. Reads its inputs by shape (server/wire/shapes.py), never the store itself.

Element order follows the XSD sequences (sep2 2018 + CSIP-AUS v1.2 redefinitions, where the
csipaus: elements come after every standard element).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lxml import etree

from gridshare.core.der_control_fields import (
    CONTROL_BASE_FIELDS,
    DEFAULT_CONTROL_FIELDS,
    ControlField,
    Encoding,
)
from gridshare.server.wire import hrefs
from gridshare.server.wire import shapes as m
from gridshare.server.wire.power import encode_active_power_w
from gridshare.server.wire.xmlio import CSIP_NS, NSMAP, SEP_NS

_S = f"{{{SEP_NS}}}"
_C = f"{{{CSIP_NS}}}"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

#: PowerSourceType (2030.5 DeviceInformation): a server runs on mains and has no second source.
POWER_MAINS = 1
POWER_NONE = 0

#: SubscribableType 1: non-conditional subscriptions. Set on every resource server/notify can render.
SUBSCRIBABLE = 1
#: DER documents whose schema type is a SubscribableResource (DERCapability is a plain Resource).
_SUBSCRIBABLE_DOCUMENTS = {"DERSettings", "DERStatus", "DERAvailability"}


def root(name: str, href: str | None = None, **attrs: object) -> etree._Element:
    el = etree.Element(_S + name, nsmap=NSMAP)
    if href is not None:
        el.set("href", href)
    for key, value in attrs.items():
        if value is not None:
            el.set(key, _attr(value))
    return el


def _attr(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sub(
    parent: etree._Element, name: str, value: object = None, ns: str = _S, **attrs: object
) -> etree._Element:
    el = etree.SubElement(parent, ns + name)
    if value is not None:
        el.text = _attr(value)
    for key, attr in attrs.items():
        if attr is not None:
            el.set(key, _attr(attr))
    return el


def link(parent: etree._Element, name: str, href: str, all_: int | None = None, ns: str = _S) -> None:
    sub(parent, name, ns=ns, href=href, all=all_)


def hex_binary(value: int, min_digits: int = 2) -> str:
    """HexBinary wants an even number of digits."""
    digits = f"{value:0{min_digits}X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def active_power(parent: etree._Element, name: str, watts: float, ns: str = _S) -> None:
    multiplier, value = encode_active_power_w(watts)
    el = sub(parent, name, ns=ns)
    sub(el, "multiplier", multiplier)
    sub(el, "value", value)


def list_root(
    name: str,
    href: str,
    all_: int,
    items: int,
    poll_rate_s: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    return root(name, href, subscribable=subscribable, all=all_, results=items, pollRate=poll_rate_s)


# --- discovery -------------------------------------------------------------------------------------


def device_capability(
    poll_rate_s: int, has_self_device: bool, edev_count: int, mup_count: int
) -> etree._Element:
    """DeviceCapability. SelfDeviceLink names this server (2030.5 §8.4), never the client's EndDevice:
    a client finds that through the EndDeviceList or the Location of its registration."""
    el = root("DeviceCapability", hrefs.DCAP, pollRate=poll_rate_s)
    link(el, "TimeLink", hrefs.TIME)
    link(el, "UsagePointListLink", hrefs.UPT_LIST, mup_count)
    link(el, "EndDeviceListLink", hrefs.EDEV_LIST, edev_count)
    link(el, "MirrorUsagePointListLink", hrefs.MUP_LIST, mup_count)
    if has_self_device:
        link(el, "SelfDeviceLink", hrefs.SELF_DEVICE)
    return el


def self_device(me: m.ServerShape, poll_rate_s: int) -> etree._Element:
    """The server itself: its certificate's lFDI/sFDI and its DeviceInformation (2030.5 §8.4, §9.3)."""
    el = root("SelfDevice", hrefs.SELF_DEVICE, subscribable=0, pollRate=poll_rate_s)
    link(el, "DeviceInformationLink", hrefs.SELF_DEVICE_INFO)
    sub(el, "lFDI", me.lfdi)
    sub(el, "sFDI", me.sfdi)
    return el


def device_information(me: m.ServerShape, pen: int, poll_rate_s: int) -> etree._Element:
    """DeviceInformation of the server: every server SHALL serve one (2030.5 §9.3.3)."""
    el = root("DeviceInformation", hrefs.SELF_DEVICE_INFO, pollRate=poll_rate_s)
    sub(el, "lFDI", me.lfdi)
    sub(el, "mfDate", me.made_s)
    sub(el, "mfHwVer", me.hardware)
    sub(el, "mfID", pen)
    sub(el, "mfModel", "GridShare")
    sub(el, "mfSerNum", me.serial)
    sub(el, "primaryPower", POWER_MAINS)
    sub(el, "secondaryPower", POWER_NONE)
    sub(el, "swActTime", me.started_s)
    sub(el, "swVer", me.software_version)
    return el


def time_resource(
    now_s: int,
    tz_offset_s: int,
    dst_offset_s: int,
    dst_start_s: int,
    dst_end_s: int,
    local_time_s: int,
    poll_rate_s: int,
) -> etree._Element:
    el = root("Time", hrefs.TIME, pollRate=poll_rate_s)
    sub(el, "currentTime", now_s)
    sub(el, "dstEndTime", dst_end_s)
    sub(el, "dstOffset", dst_offset_s)
    sub(el, "dstStartTime", dst_start_s)
    sub(el, "localTime", local_time_s)
    # quality 4: time from a network source of intermediate accuracy (IEEE 2030.5 Time.quality)
    sub(el, "quality", 4)
    sub(el, "tzOffset", tz_offset_s)
    return el


# --- end devices -----------------------------------------------------------------------------------


def end_device(
    el_or_none: etree._Element | None,
    site: m.SiteShape,
    *,
    virtual: bool = False,
    changed_s: int | None = None,
) -> etree._Element:
    """An EndDevice; the aggregator's own virtual EndDevice (/edev/0) carries no function-set links.

    Only /edev/0 links a SubscriptionList: subscriptions are the aggregator's, and cactus-client expects
    exactly one SubscriptionList among the EndDevices an aggregator discovers.
    """
    site_id = hrefs.AGGREGATOR_EDEV_ID if virtual else site.id
    href = hrefs.edev(site_id)
    if el_or_none is None:
        el = root("EndDevice", href, subscribable=0)
    else:
        el = sub(el_or_none, "EndDevice", href=href, subscribable=0)
    if not virtual:
        link(el, "DERListLink", hrefs.der_list(site.id))
    sub(el, "deviceCategory", hex_binary(site.device_category))
    sub(el, "lFDI", site.lfdi)
    if not virtual:
        link(el, "LogEventListLink", hrefs.log_event_list(site.id))
    sub(el, "sFDI", site.sfdi)
    sub(el, "changedTime", changed_s if changed_s is not None else site.changed_s)
    sub(el, "enabled", bool(site.enabled))
    if not virtual:
        link(el, "FunctionSetAssignmentsListLink", hrefs.fsa_list(site.id))
        if site.post_rate_s is not None:
            sub(el, "postRate", site.post_rate_s)
        link(el, "RegistrationLink", hrefs.registration(site.id))
        link(el, "ConnectionPointLink", hrefs.connection_point(site.id), ns=_C)
    else:
        link(el, "SubscriptionListLink", hrefs.subscription_list(hrefs.AGGREGATOR_EDEV_ID))
    return el


def registration(site: m.SiteShape, poll_rate_s: int) -> etree._Element:
    el = root("Registration", hrefs.registration(site.id), pollRate=poll_rate_s)
    sub(el, "dateTimeRegistered", site.created_s)
    sub(el, "pIN", site.registration_pin)
    return el


def connection_point(site: m.SiteShape) -> etree._Element:
    el = etree.Element(_C + "ConnectionPoint", nsmap={None: CSIP_NS, "sep": SEP_NS})
    el.set("href", hrefs.connection_point(site.id))
    sub(el, "connectionPointId", site.nmi or "", ns=_C)
    return el


# --- function sets and programs ---------------------------------------------------------------------


def fsa(parent: etree._Element | None, site_id: int, f: m.FsaShape, program_count: int) -> etree._Element:
    href = hrefs.fsa(site_id, f.id)
    el = (
        root("FunctionSetAssignments", href, subscribable=0)
        if parent is None
        else sub(parent, "FunctionSetAssignments", href=href, subscribable=0)
    )
    link(el, "DERProgramListLink", hrefs.derp_list(site_id, f.id), program_count)
    link(el, "TimeLink", hrefs.TIME)
    sub(el, "mRID", f.mrid)
    sub(el, "description", f.description)
    return el


def der_program(
    parent: etree._Element | None, site_id: int, p: m.ProgramShape, control_count: int, curve_count: int
) -> etree._Element:
    href = hrefs.derp(site_id, p.id)
    el = (
        root("DERProgram", href, subscribable=0)
        if parent is None
        else sub(parent, "DERProgram", href=href, subscribable=0)
    )
    sub(el, "mRID", p.mrid)
    sub(el, "description", p.description)
    sub(el, "version", p.version)
    link(el, "ActiveDERControlListLink", hrefs.active_derc_list(site_id, p.id))
    link(el, "DefaultDERControlLink", hrefs.default_derc(site_id, p.id))
    link(el, "DERControlListLink", hrefs.derc_list(site_id, p.id), control_count)
    link(el, "DERCurveListLink", hrefs.curve_list(site_id, p.id), curve_count)
    sub(el, "primacy", p.primacy)
    return el


def control_base(parent: etree._Element, c: m.ControlBaseShape) -> None:
    base = sub(parent, "DERControlBase")
    for field in CONTROL_BASE_FIELDS:
        control_field(base, field, getattr(c, field.name))


def control_field(parent: etree._Element, field: ControlField, value: object) -> None:
    """One field of core.der_control_fields, written as its encoding says; None writes nothing."""
    if value is None:
        return
    ns = _C if field.csipaus else _S
    if field.encoding is Encoding.active_power_w:
        active_power(parent, field.element, float(value), ns=ns)  # type: ignore[arg-type]
    elif field.encoding is Encoding.boolean:
        sub(parent, field.element, bool(value), ns=ns)
    else:
        sub(parent, field.element, value, ns=ns)


def der_control(parent: etree._Element | None, state: m.ControlStateShape, program_id: int) -> etree._Element:
    c: m.ControlShape = state.control
    href = hrefs.derc(c.site_id, program_id, c.id)
    attrs: dict[str, Any] = {  # Any, not object: spread into sub(), where it could fill `value`/`ns`
        "href": href,
        "replyTo": hrefs.DERC_RESPONSES,
        "responseRequired": hex_binary(c.response_required),
        "subscribable": 0,
    }
    if parent is None:
        el = etree.Element(_S + "DERControl", nsmap=NSMAP)
        for k, v in attrs.items():
            el.set(k, str(v))
    else:
        el = sub(parent, "DERControl", **attrs)
    sub(el, "mRID", c.mrid)
    sub(el, "description", c.description)
    sub(el, "version", c.version)
    sub(el, "creationTime", c.creation_s)
    status = sub(el, "EventStatus")
    sub(status, "currentStatus", state.status)
    sub(status, "dateTime", state.status_time_s)
    sub(status, "potentiallySuperseded", state.potentially_superseded)
    interval = sub(el, "interval")
    sub(interval, "duration", c.duration_s)
    sub(interval, "start", c.start_s)
    if c.randomize_duration_s is not None:
        sub(el, "randomizeDuration", c.randomize_duration_s)
    if c.randomize_start_s is not None:
        sub(el, "randomizeStart", c.randomize_start_s)
    control_base(el, c)
    return el


def der_control_list(
    href: str, states: Sequence[m.ControlStateShape], total: int, program_id: int
) -> etree._Element:
    el = list_root("DERControlList", href, total, len(states), subscribable=SUBSCRIBABLE)
    for state in states:
        der_control(el, state, program_id)
    return el


def default_der_control(site_id: int, d: m.DefaultControlShape) -> etree._Element:
    el = root("DefaultDERControl", hrefs.default_derc(site_id, d.program_id), subscribable=SUBSCRIBABLE)
    sub(el, "mRID", d.mrid)
    sub(el, "description", d.description)
    sub(el, "version", d.version)
    control_base(el, d)
    for field in DEFAULT_CONTROL_FIELDS:
        control_field(el, field, getattr(d, field.name))
    return el


def der_curve(parent: etree._Element | None, site_id: int, c: m.CurveShape) -> etree._Element:
    href = hrefs.curve(site_id, c.program_id, c.id)
    el = root("DERCurve", href) if parent is None else sub(parent, "DERCurve", href=href)
    sub(el, "mRID", c.mrid)
    sub(el, "description", c.description)
    sub(el, "creationTime", c.creation_s)
    for x, y in c.points:
        point = sub(el, "CurveData")
        sub(point, "xvalue", x)
        sub(point, "yvalue", y)
    sub(el, "curveType", c.curve_type)
    sub(el, "xMultiplier", c.x_multiplier)
    sub(el, "yMultiplier", c.y_multiplier)
    sub(el, "yRefType", c.y_ref_type)
    return el


# --- DERs --------------------------------------------------------------------------------------------

DER_DOCS = hrefs.DER_DOCS


def der(
    parent: etree._Element | None, site_id: int, d: m.DerShape, current_program_id: int | None
) -> etree._Element:
    href = hrefs.der(site_id, d.der_index)
    el = (
        root("DER", href, subscribable=0) if parent is None else sub(parent, "DER", href=href, subscribable=0)
    )
    if current_program_id is not None:
        link(el, "CurrentDERProgramLink", hrefs.derp(site_id, current_program_id))
    link(el, "DERAvailabilityLink", hrefs.der_doc(site_id, d.der_index, "dera"))
    link(el, "DERCapabilityLink", hrefs.der_doc(site_id, d.der_index, "dercap"))
    link(el, "DERSettingsLink", hrefs.der_doc(site_id, d.der_index, "derg"))
    link(el, "DERStatusLink", hrefs.der_doc(site_id, d.der_index, "ders"))
    return el


def stored_document(xml_text: str, href: str) -> etree._Element:
    """A document the client PUT, returned as stored with our href (it was schema-valid when stored)."""
    el = etree.fromstring(xml_text.encode())
    el.set("href", href)
    if etree.QName(el).localname in _SUBSCRIBABLE_DOCUMENTS:
        el.set("subscribable", str(SUBSCRIBABLE))
    return el


# --- responses, log events ----------------------------------------------------------------------------


def response(parent: etree._Element | None, r: m.ResponseShape, site: m.SiteShape) -> etree._Element:
    href = hrefs.response(r.id)
    el = root("Response", href) if parent is None else sub(parent, "Response", href=href)
    sub(el, "createdDateTime", r.created_s)
    sub(el, "endDeviceLFDI", site.lfdi)
    sub(el, "status", r.status)
    sub(el, "subject", r.subject_mrid)
    return el


def log_event(parent: etree._Element | None, e: m.LogEventShape) -> etree._Element:
    href = hrefs.log_event(e.site_id, e.id)
    el = root("LogEvent", href) if parent is None else sub(parent, "LogEvent", href=href)
    sub(el, "createdDateTime", e.created_s)
    if e.details:
        sub(el, "details", e.details)
    if e.extended_data is not None:
        sub(el, "extendedData", e.extended_data)
    sub(el, "functionSet", e.function_set)
    sub(el, "logEventCode", e.log_event_code)
    sub(el, "logEventID", e.log_event_id)
    sub(el, "logEventPEN", e.log_event_pen)
    sub(el, "profileID", e.profile_id)
    return el


# --- subscriptions and notifications ----------------------------------------------------------------


def subscription(parent: etree._Element | None, s: m.SubscriptionShape, href: str) -> etree._Element:
    """A Subscription echoed as the client sent it (cactus-client compares the two field by field)."""
    el = root("Subscription", href) if parent is None else sub(parent, "Subscription", href=href)
    sub(el, "subscribedResource", s.resource_href)
    sub(el, "encoding", s.encoding)
    sub(el, "level", s.level)
    sub(el, "limit", s.result_limit)
    sub(el, "notificationURI", s.notification_uri)
    return el


def notification(
    subscribed_href: str, subscription_uri: str, resource: etree._Element | None, status: int = 0
) -> etree._Element:
    """A Notification carrying `resource` (consumed: re-tagged as <Resource xsi:type="...">).

    The xsi:type is the resource's own element name, unprefixed, which resolves in the 2030.5 default
    namespace the Notification declares; cactus-client dispatches on exactly that name.
    """
    el = etree.Element(_S + "Notification", nsmap={**NSMAP, "xsi": XSI_NS})
    sub(el, "subscribedResource", subscribed_href)
    if resource is not None:
        type_name = etree.QName(resource).localname
        resource.tag = _S + "Resource"
        el.append(resource)
        resource.set(f"{{{XSI_NS}}}type", type_name)
    sub(el, "status", status)
    sub(el, "subscriptionURI", subscription_uri)
    etree.cleanup_namespaces(el, top_nsmap={**NSMAP, "xsi": XSI_NS})
    return el


def append_all(parent: etree._Element, children: Iterable[etree._Element]) -> etree._Element:
    for child in children:
        parent.append(child)
    return parent

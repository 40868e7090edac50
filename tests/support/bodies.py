"""Client request bodies written out by hand, as a device's firmware would send them.

Bodies the simulated fleet sends the same way are taken from its writer (`sim/wire.py`), so the
server's tests also prove the simulator's requests are accepted; the rest have variants only tests need
(an EndDevice without lFDI, string categories, DER documents).
"""

from __future__ import annotations

from gridshare.sim.wire import connection_point_body as connection_point
from gridshare.sim.wire import response_body as response

NS = 'xmlns="urn:ieee:std:2030.5:ns"'
CSIP = 'xmlns:csipaus="https://csipaus.org/ns"'


def end_device(sfdi: int, lfdi: str | None = None, changed_s: int = 0, category: str = "00") -> bytes:
    lfdi_el = f"<lFDI>{lfdi}</lFDI>" if lfdi else ""
    return (
        f"<EndDevice {NS}><deviceCategory>{category}</deviceCategory>{lfdi_el}<sFDI>{sfdi}</sFDI>"
        f"<changedTime>{changed_s}</changedTime></EndDevice>"
    ).encode()


def der_capability(rtg_max_w_value: int, multiplier: int = 0) -> bytes:
    return (
        f"<DERCapability {NS} {CSIP}><modesSupported>00500088</modesSupported>"
        f"<rtgMaxW><multiplier>{multiplier}</multiplier><value>{rtg_max_w_value}</value></rtgMaxW>"
        f"<type>4</type><csipaus:doeModesSupported>03</csipaus:doeModesSupported></DERCapability>"
    ).encode()


def der_settings(set_max_w: int, updated_s: int) -> bytes:
    return (
        f"<DERSettings {NS}><setGradW>27</setGradW><setMaxW><multiplier>0</multiplier>"
        f"<value>{set_max_w}</value></setMaxW><updatedTime>{updated_s}</updatedTime></DERSettings>"
    ).encode()


def der_status(reading_s: int) -> bytes:
    return (
        f"<DERStatus {NS}><genConnectStatus><dateTime>{reading_s}</dateTime><value>01</value>"
        f"</genConnectStatus><readingTime>{reading_s}</readingTime></DERStatus>"
    ).encode()


def der_availability(reading_s: int, stat_w_avail: int) -> bytes:
    return (
        f"<DERAvailability {NS}><readingTime>{reading_s}</readingTime><statWAvail><multiplier>0</multiplier>"
        f"<value>{stat_w_avail}</value></statWAvail></DERAvailability>"
    ).encode()


def mirror_usage_point(mrid: str, device_lfdi: str, mmr_mrid: str, reading_s: int, value: int) -> bytes:
    return (
        f"<MirrorUsagePoint {NS}><mRID>{mrid}</mRID><roleFlags>49</roleFlags>"
        f"<serviceCategoryKind>0</serviceCategoryKind><status>1</status><deviceLFDI>{device_lfdi}</deviceLFDI>"
        f"<MirrorMeterReading><mRID>{mmr_mrid}</mRID><Reading><timePeriod><duration>300</duration>"
        f"<start>{reading_s}</start></timePeriod><value>{value}</value></Reading>"
        f"<ReadingType><commodity>1</commodity><flowDirection>19</flowDirection><kind>37</kind>"
        f"<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType></MirrorMeterReading>"
        f"</MirrorUsagePoint>"
    ).encode()


def meter_reading(mmr_mrid: str, reading_s: int, value: int) -> bytes:
    return (
        f"<MirrorMeterReading {NS}><mRID>{mmr_mrid}</mRID><Reading><timePeriod><duration>300</duration>"
        f"<start>{reading_s}</start></timePeriod><value>{value}</value></Reading></MirrorMeterReading>"
    ).encode()


def log_event(created_s: int, code: int) -> bytes:
    return (
        f"<LogEvent {NS}><createdDateTime>{created_s}</createdDateTime><functionSet>0</functionSet>"
        f"<logEventCode>{code}</logEventCode><logEventID>1</logEventID><logEventPEN>0</logEventPEN>"
        f"<profileID>0</profileID></LogEvent>"
    ).encode()


SEP_XML = {"Content-Type": "application/sep+xml"}

__all__ = [
    "CSIP",
    "NS",
    "SEP_XML",
    "connection_point",
    "der_availability",
    "der_capability",
    "der_settings",
    "der_status",
    "end_device",
    "log_event",
    "meter_reading",
    "mirror_usage_point",
    "response",
]

"""Every href the server emits or accepts, built in one place so routes and encoders agree."""

from __future__ import annotations

DCAP = "/dcap"
TIME = "/tm"
EDEV_LIST = "/edev"
MUP_LIST = "/mup"
#: SelfDevice: the server itself (2030.5 §8.4), and its DeviceInformation (§9.3).
SELF_DEVICE = "/sdev"
SELF_DEVICE_INFO = "/sdev/di"
#: Metering (2030.5 §10.4): read-only views of what clients mirror; /upt/{n} is /mup/{n}'s UsagePoint.
UPT_LIST = "/upt"
#: Responses to DERControls go to one ResponseSet (2030.5 §12.1: replyTo names the ResponseList).
DERC_RESPONSES = "/rsps/1/rsp"
AGGREGATOR_EDEV_ID = 0


def edev(site_id: int) -> str:
    return f"/edev/{site_id}"


def registration(site_id: int) -> str:
    return f"/edev/{site_id}/rg"


def connection_point(site_id: int) -> str:
    return f"/edev/{site_id}/cp"


def fsa_list(site_id: int) -> str:
    return f"/edev/{site_id}/fsa"


def fsa(site_id: int, fsa_id: int) -> str:
    return f"/edev/{site_id}/fsa/{fsa_id}"


def derp_list(site_id: int, fsa_id: int) -> str:
    return f"/edev/{site_id}/fsa/{fsa_id}/derp"


def derp(site_id: int, program_id: int) -> str:
    return f"/edev/{site_id}/derp/{program_id}"


def derc_list(site_id: int, program_id: int) -> str:
    return f"/edev/{site_id}/derp/{program_id}/derc"


def derc(site_id: int, program_id: int, control_id: int) -> str:
    return f"/edev/{site_id}/derp/{program_id}/derc/{control_id}"


def active_derc_list(site_id: int, program_id: int) -> str:
    return f"/edev/{site_id}/derp/{program_id}/actderc"


def default_derc(site_id: int, program_id: int) -> str:
    return f"/edev/{site_id}/derp/{program_id}/dderc"


def curve_list(site_id: int, program_id: int) -> str:
    return f"/edev/{site_id}/derp/{program_id}/dc"


def curve(site_id: int, program_id: int, curve_id: int) -> str:
    return f"/edev/{site_id}/derp/{program_id}/dc/{curve_id}"


def der_list(site_id: int) -> str:
    return f"/edev/{site_id}/der"


def der(site_id: int, der_index: int) -> str:
    return f"/edev/{site_id}/der/{der_index}"


def der_doc(site_id: int, der_index: int, doc: str) -> str:
    return f"/edev/{site_id}/der/{der_index}/{doc}"


def log_event_list(site_id: int) -> str:
    return f"/edev/{site_id}/lel"


def log_event(site_id: int, event_id: int) -> str:
    return f"/edev/{site_id}/lel/{event_id}"


def mup(mup_id: int) -> str:
    return f"/mup/{mup_id}"


def response(response_id: int) -> str:
    return f"{DERC_RESPONSES}/{response_id}"


def subscription_list(edev_id: int) -> str:
    return f"/edev/{edev_id}/sub"


def subscription(edev_id: int, subscription_id: int) -> str:
    return f"/edev/{edev_id}/sub/{subscription_id}"


def upt(mup_id: int) -> str:
    return f"/upt/{mup_id}"


def meter_reading_list(mup_id: int) -> str:
    return f"/upt/{mup_id}/mr"


def meter_reading(mup_id: int, mmr_id: int) -> str:
    return f"/upt/{mup_id}/mr/{mmr_id}"


def reading_type(mup_id: int, mmr_id: int) -> str:
    return f"/upt/{mup_id}/mr/{mmr_id}/rt"


def latest_reading(mup_id: int, mmr_id: int) -> str:
    """The MeterReading's ReadingLink: always its newest Reading, at one stable href."""
    return f"/upt/{mup_id}/mr/{mmr_id}/r"


def reading_set_list(mup_id: int, mmr_id: int) -> str:
    return f"/upt/{mup_id}/mr/{mmr_id}/rs"


def reading_set(mup_id: int, mmr_id: int, day_start_s: int) -> str:
    return f"/upt/{mup_id}/mr/{mmr_id}/rs/{day_start_s}"


def reading_list(mup_id: int, mmr_id: int, day_start_s: int) -> str:
    return f"/upt/{mup_id}/mr/{mmr_id}/rs/{day_start_s}/r"


def reading(mup_id: int, mmr_id: int, day_start_s: int, reading_id: int) -> str:
    return f"/upt/{mup_id}/mr/{mmr_id}/rs/{day_start_s}/r/{reading_id}"

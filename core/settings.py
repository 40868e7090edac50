"""One settings object for the whole service: environment variables over a TOML file over safe defaults.

Every variable is `GRIDSHARE_<FIELD>` (e.g. `GRIDSHARE_DATABASE_URL`); the optional file is named by
`GRIDSHARE_CONFIG` or found as `./gridshare.toml`. Defaults are safe: loopback only, embedded SQLite.

A mistake in any of them is one line naming the setting and where it came from (`SettingsError`), never
a traceback, and a misspelt name is refused with the closest real one rather than silently ignored:
every key in the file must be a setting; in the environment, a `GRIDSHARE_` name that is not a setting
is refused when it is close to one (`GRIDSHARE_PROT`), unless it is one of the variables other tools
use (`NOT_SETTINGS`); other `GRIDSHARE_` names are left to whoever reads them.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, IPvAnyNetwork, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as _SourceError

#: Poll rates (seconds) advertised per resource. 300 s for discovery lists and 60 s for programs and
#: DERs follow what a public CSIP-AUS server advertises (design notes §1).
DEFAULT_POLL_RATES_S: dict[str, int] = {
    "dcap": 300,
    "edev": 300,
    "fsa": 300,
    "derp": 60,
    "der": 60,
    "mup": 300,
}

ENV_PREFIX = "GRIDSHARE_"
DEFAULT_FILE = "gridshare.toml"

#: `GRIDSHARE_` variables that are not settings: the file's name, what the test suite, the
#: conformance scripts and the cactus admin plugin read, and the nginx template's and compose file's
#: variables (deploy/). Never refused, even when close to a setting (GRIDSHARE_TLS_CERT).
NOT_SETTINGS = frozenset(
    {
        "GRIDSHARE_CONFIG",
        "GRIDSHARE_TEST_PG_URL",
        "GRIDSHARE_FUZZ_EXAMPLES",
        "GRIDSHARE_CONFORMANCE_HOME",
        "GRIDSHARE_CONFORMANCE_ONLY",
        "GRIDSHARE_CACTUS_NOTIFY_WAIT_S",
        "GRIDSHARE_OPERATOR_URL",
        "GRIDSHARE_OPERATOR_TOKEN",
        "GRIDSHARE_OPERATOR_TOKEN_FILE",
        "GRIDSHARE_INTEROP_HOME",  # tests/interop/run.sh
        "GRIDSHARE_CHROMIUM",  # tests/server/operator/test_console_browser.py
        "GRIDSHARE_SCREENSHOTS",
        "GRIDSHARE_METRICS_DIR",  # server/shared/metrics.py: set by the parent for its serving workers
        # deploy/nginx/gridshare.conf.template and deploy/compose.yaml
        "GRIDSHARE_LISTEN",
        "GRIDSHARE_SERVER_NAME",
        "GRIDSHARE_TLS_CERT",
        "GRIDSHARE_TLS_KEY",
        "GRIDSHARE_CLIENT_CA",
        "GRIDSHARE_UPSTREAM_SERVERS",
        "GRIDSHARE_UPSTREAMS",
        "GRIDSHARE_CERT_HEADER",
        "GRIDSHARE_ACCESS_LOG",
        "GRIDSHARE_SERVERS",
        "GRIDSHARE_TLS_DIR",
    }
)

#: How alike an unknown environment name must be to a setting to be taken for a misspelling of it
#: (difflib ratio: GRIDSHARE_PROT -> port is 0.75, GRIDSHARE_DATABSE_URL -> database_url 0.96).
_ENV_TYPO_RATIO = 0.75


class SettingsError(Exception):
    """A setting that cannot be used: the message is one line naming it and where it came from."""


def closest_setting(name: str, cutoff: float = 0.6) -> str | None:
    """The setting `name` was most likely meant to be, if any is alike enough."""
    found = difflib.get_close_matches(name, list(Settings.model_fields), n=1, cutoff=cutoff)
    return found[0] if found else None


def _did_you_mean(name: str, spelled: str = "{}", cutoff: float = 0.6) -> str:
    match = closest_setting(name, cutoff)
    return f"; did you mean {spelled.format(match)!r}?" if match else ""


def config_path() -> tuple[Path, bool]:
    """The TOML file to read, and whether GRIDSHARE_CONFIG named it (then it must exist)."""
    named = os.environ.get("GRIDSHARE_CONFIG")
    return Path(named or DEFAULT_FILE), bool(named)


def _line_of(text: str, key: str) -> int | None:
    """The line (1-based) where `key` is set in a TOML text: `key = ...` or a `[key]` table header."""
    pattern = re.compile(
        rf"""^\s*(?:["']?{re.escape(key)}["']?\s*=|\[\s*(?:gridshare\s*\.\s*)?["']?{re.escape(key)}["']?\s*\])"""
    )
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


#: What one `gridshare serve` process can do. The embedded start does all four; behind a proxy, any
#: number of processes `serve` devices and one process publishes, notifies and hosts the operator API.
Role = Literal["serve", "operator", "publish", "notify"]
ALL_ROLES: tuple[Role, ...] = ("serve", "operator", "publish", "notify")


class _TomlSource(PydanticBaseSettingsSource):
    """Reads `[gridshare]` (or top-level keys) from the TOML file, lower priority than the environment."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path, named = config_path()
        self.path = path
        self.text = ""
        self._data: dict[str, Any] = {}
        if not path.is_file():
            if named:
                raise SettingsError(f"GRIDSHARE_CONFIG names {str(path)!r}, which does not exist")
            return
        try:
            self.text = path.read_text(encoding="utf-8")
            raw = tomllib.loads(self.text)
        except OSError as exc:
            raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise SettingsError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            # tomllib says where: "Expected '=' after a key in a key/value pair (at line 3, column 6)"
            raise SettingsError(f"{path}: not valid TOML: {exc}") from None
        table = raw.get("gridshare", raw)
        if not isinstance(table, dict):
            raise SettingsError(f"{path}: 'gridshare' must be a table ([gridshare]) of settings")
        outside = [k for k in raw if k != "gridshare"] if "gridshare" in raw else []
        for key in [*table, *outside]:
            if key in settings_cls.model_fields and key not in outside:
                continue
            where = self.where(key)
            if key in outside and key in settings_cls.model_fields:
                raise SettingsError(
                    f"setting {key!r} in {where} is outside the [gridshare] table; move it in"
                )
            raise SettingsError(f"unknown setting {key!r} in {where}{_did_you_mean(key)}")
        self._data = table

    def where(self, key: str) -> str:
        """`gridshare.toml line 4`: where a key is set, for messages."""
        line = _line_of(self.text, key)
        return f"{self.path} line {line}" if line else str(self.path)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class _EnvSource(EnvSettingsSource):
    """`GRIDSHARE_<FIELD>` variables: misspelt names and malformed lists or tables are SettingsErrors."""

    def __call__(self) -> dict[str, Any]:
        check_environment(os.environ)
        try:
            return super().__call__()
        except _SourceError as exc:
            field = re.search(r'field "([^"]+)"', str(exc))
            name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "a GRIDSHARE_ variable"
            cause = exc.__cause__
            reason = (
                f"{cause.msg} at character {cause.pos}" if isinstance(cause, json.JSONDecodeError) else cause
            )
            example = _EXAMPLES.get(field.group(1) if field else "", "JSON")
            raise SettingsError(f"{name}: not valid JSON ({reason}); write it as {example}") from None


#: How a table setting is written in an environment variable (pydantic-settings reads JSON; lists such
#: as trusted_proxies and roles also take `a,b`).
_EXAMPLES = {
    "poll_rates_s": """'{"dcap": 600, "derp": 60}'""",
}


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a `GRIDSHARE_` variable that is no setting but looks like a misspelt one."""
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NOT_SETTINGS:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in Settings.model_fields:
            continue
        match = closest_setting(key, _ENV_TYPO_RATIO)
        if match:
            raise SettingsError(
                f"unknown setting {name} in the environment; did you mean {ENV_PREFIX}{match.upper()}?"
            )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDSHARE_", extra="ignore")

    data_dir: Path = Field(Path("gridshare-data"), description="Where the SQLite file and dev PKI live.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite in data_dir.")

    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    public_base_url: str = Field("", description="Absolute base for hrefs in notifications (issue 3).")
    operator_host: str = Field("127.0.0.1", description="Operator API address (plain HTTP; keep it private).")
    operator_port: int = Field(8080, ge=1, le=65535, description="Operator API port.")

    tls_ca_file: Path | None = Field(None, description="Trust anchor(s) for client certificates (PEM).")
    tls_cert_file: Path | None = Field(None, description="Server certificate chain (PEM).")
    tls_key_file: Path | None = Field(None, description="Server private key (PEM).")
    dev_pki: bool = Field(
        True, description="Generate a development PKI in data_dir/pki when TLS files are unset."
    )

    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy addresses or networks allowed to forward a client certificate (empty: proxy "
        "mode off). A list, or comma-separated in GRIDSHARE_TRUSTED_PROXIES.",
    )
    proxy_cert_header: str = "x-client-cert"
    behind_proxy: bool = Field(
        False,
        description="A TLS-terminating proxy in front: serve plain HTTP and take the client certificate "
        "from proxy_cert_header, only from trusted_proxies.",
    )

    roles: Annotated[list[Role], NoDecode] = Field(
        default_factory=lambda: list(ALL_ROLES),
        description="What this process does: serve (the CSIP-AUS endpoint), operator (the operator API), "
        "publish (the envelope engine, one publisher per database through a lease), notify (notifications "
        "to subscribers). A list, or comma-separated in GRIDSHARE_ROLES. Default: all four.",
    )
    tls_handshake_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A TLS handshake on the device port must finish within this many seconds (and a "
        "closing peer must answer close_notify within it); else the connection is dropped.",
    )
    request_header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="A request's line and headers must arrive within this many seconds of its first byte "
        "(of the connection's start, for its first request): else 408 and close.",
    )
    request_body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A request body must arrive in full within this many seconds of its headers: "
        "else 408 and close (a body is at most max_body_bytes).",
    )
    keep_alive_timeout_s: float = Field(
        65.0,
        gt=0,
        le=3600,
        description="An idle keep-alive connection is closed after this many seconds; above the 60 s "
        "DERProgram/DER poll rate so a polling device keeps its connection.",
    )
    max_connections_per_client: int = Field(
        100,
        ge=1,
        description="Open device-port connections one client may hold (by certificate lFDI, else peer "
        "address; trusted proxies count only towards max_connections); more get 503 and are closed.",
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="Open device-port connections per serving process; more get 503 and are closed. "
        "Unset: what the open-files limit allows (raised to its hard limit at start) less 256.",
    )

    open_registration: bool = Field(
        True, description="Devices whose certificate chains to the trust anchor may register themselves."
    )
    change_feed: bool = Field(
        True,
        description="Learn about publications from a change feed (LISTEN/NOTIFY on PostgreSQL) instead of "
        "reading the publication counter on every cached request; off only to measure the difference.",
    )
    list_limit_cap: int = Field(500, ge=1, description="Largest page a list answers (design notes §1).")
    max_body_bytes: int = Field(65536, ge=1024)
    report_linger_ms: float = Field(
        4.0,
        ge=0,
        le=100,
        description="Under concurrent load, how long a batch of device reports (readings, Responses) "
        "waits for more before its transaction commits: larger batches cost less CPU per report, at up "
        "to this much latency on each 201. A lone report is committed at once. 0: never wait.",
    )
    max_xml_depth: int = Field(24, ge=4)
    worker_threads: int = Field(
        4,
        ge=1,
        le=256,
        description="Threads per serving process that run request handlers and store work off the event "
        "loop. A process runs one thread of Python at a time, so more threads only add switching: 4 "
        "instead of 40 cut a fleet's first requests by a fifth of their CPU (docs/bench-conversation.md).",
    )
    poll_rates_s: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_POLL_RATES_S))
    mup_post_rate_s: int = Field(60, ge=1, description="Telemetry post rate advertised on MirrorUsagePoints.")
    timezone: str = Field("UTC", description="IANA zone for the Time resource, e.g. Australia/Brisbane.")
    default_registration_pin: int = Field(
        111115, ge=0, le=999999, description="PIN given to self-registered EndDevices (5 digits + check)."
    )
    default_export_limit_w: float = Field(1500.0, ge=0, description="Seeded DefaultDERControl export limit.")
    default_import_limit_w: float | None = Field(None, ge=0)
    default_set_grad_w_hundredths: int | None = Field(
        None, ge=0, le=65535, description="Seeded DefaultDERControl setGradW (hundredths of %/s)."
    )
    recompute_interval_s: int = Field(300, ge=10, description="How often envelopes are recomputed.")
    envelope_horizon_s: int = Field(86400, ge=300, description="Rolling horizon of each recomputation.")
    envelope_interval_s: int = Field(300, ge=60, description="Length of one envelope interval.")
    allocation_policy: str = Field("pro-rata", pattern="^(pro-rata|tranche|lifo|max-total)$")
    forecast_aware_envelopes: bool = Field(
        False,
        description=(
            "Cap each dynamic site's envelope at its forecast (telemetry carried forward over its profile) "
            "plus forecast_margin_fraction of its agreed capacity, so capacity an earlier site will not "
            "use goes to later ones (LIFO, tranches). Off: envelopes share agreed capacity."
        ),
    )
    forecast_margin_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Margin above forecast, as a share of the site's agreed capacity (forecast-aware only).",
    )
    change_poll_s: int = Field(2, ge=1, description="How often the engine checks for operator changes.")
    envelope_resolution_w: float = Field(
        100.0,
        gt=0,
        description="Limits are rounded down to this step, so equal neighbours merge into one control.",
    )
    envelope_resolution_pct: float = Field(
        1.0, ge=0, le=20, description="...or this share of a site's agreed maximum, if that is larger."
    )
    demo_network: bool = Field(True, description="Load the demo feeder into an empty store on first start.")
    demo_network_file: Path | None = Field(
        None, description="The demo network's file; unset: the demo feeder shipped in the package."
    )
    pen: int = Field(0, ge=0, description="IANA Private Enterprise Number in the last 8 digits of mRIDs.")
    failure_policy: str = Field(
        "fallback",
        pattern="^(fallback|expire)$",
        description="When envelopes cannot be computed from good data: publish fallback-valued envelopes "
        "at once (fallback), or let the last good ones run out so devices fall to their DefaultDERControl "
        "(expire). See docs/fallback.md.",
    )
    forecast_max_age_s: int = Field(
        3600, ge=0, description="Never publish envelopes from a forecast older than this (0: no check)."
    )
    telemetry_max_age_s: int = Field(
        900,
        ge=0,
        description="Sites post telemetry, but none is newer than this: inputs are stale (0: no check).",
    )
    recompute_budget_s: float = Field(
        120.0, gt=0, description="A computation running longer is abandoned and never published."
    )
    derate_deadline_s: float = Field(
        30.0,
        gt=0,
        description="A derate, outage or its end not in published envelopes within this many seconds of "
        "being entered (on the server's clock, so the simulator's accelerated clock too) gets fallback "
        "limits published for the sites it affects, also after a crash, a restart or a takeover; the "
        "fallback publication starts a quarter of this early so that it is out by then.",
    )
    publisher_poll_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often a standby instance tries to become the envelope publisher (and the publisher "
        "checks it still is): a dead publisher's successor takes over within about this long.",
    )
    reading_future_tolerance_s: int = Field(
        300,
        ge=0,
        description="A reading dated more than this after the server received it is not trusted: its site "
        "gets fallback limits while the reading is recent (clock skew beyond this is a wrong clock).",
    )
    reading_plausible_factor: float = Field(
        10.0,
        gt=1,
        description="A reading showing more than this many times a site's agreed maximum (at least 10 kW) "
        "is not trusted: its site gets fallback limits while the reading is recent.",
    )
    fallback_margin_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Share of each constraint's worst-case headroom fallback limits leave unused.",
    )
    fallback_export_load_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Uncontrolled load in the export worst case as a fraction of its peak; unset: the lowest "
        "point of each node's load profile.",
    )
    notification_poll_s: float = Field(
        0.25,
        gt=0,
        description="How often the notifier looks for changes and for notifications due (one cheap read).",
    )
    notification_rescan_s: int = Field(
        60, ge=1, description="Re-render subscribed resources at least this often (statuses move with time)."
    )
    notification_retry_base_s: int = Field(2, ge=1, description="First retry delay; doubles per failure.")
    notification_retry_max_s: int = Field(60, ge=1, description="Longest delay between two attempts.")
    notification_max_attempts: int = Field(
        20, ge=1, description="Attempts before a notification is dropped and its subscriber marked failed."
    )
    notification_timeout_s: float = Field(5.0, gt=0, description="Connect/read timeout of one delivery.")
    max_subscriptions_per_aggregator: int = Field(1000, ge=1)
    log_format: str = Field(
        "text",
        pattern="^(text|json)$",
        description="`text`: one readable line per event; `json`: one JSON object per line for log shippers "
        "(the same events and fields).",
    )
    device_fallback_timeout_s: int = Field(
        3600,
        ge=60,
        description="A device that has not reached the server for this long is presumed to run on its "
        "DefaultDERControl (the comms-loss timeout configured in CSIP-AUS clients).",
    )
    contact_flush_s: float = Field(
        5.0, gt=0, description="How often each serving process writes devices' last contact to the store."
    )
    compliance_response_s: int = Field(
        60,
        ge=0,
        description="Time a device is given to act on a new limit, from when the limit starts or is "
        "published, whichever is later (one DERControlList poll at the default 60 s rate).",
    )
    compliance_tolerance_w: float = Field(
        100.0, ge=0, description="Measurement tolerance: readings this far above a limit still comply..."
    )
    compliance_tolerance_pct: float = Field(
        4.0,
        ge=0,
        le=50,
        description="...or this share of the site's rating, if larger (AS/NZS 4777.2 active power accuracy).",
    )
    limit_history_days: int = Field(
        400,
        ge=1,
        description="How long the limits in force per site are kept (compliance and the curtailment ledger "
        "read them; 400 days covers a year to date).",
    )
    console_session_s: int = Field(
        8 * 3600, ge=60, description="Lifetime of an operator console login (a session cookie)."
    )
    notification_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Networks notifications may be delivered to although they are loopback, private, "
        'link-local or otherwise not public (e.g. ["10.20.0.0/16"] for an aggregator on a private link). '
        "Empty: public addresses only. This service's own listeners are refused whatever this says.",
    )
    device_time_future_tolerance_s: int = Field(
        300,
        ge=0,
        description="A time a device sends (a reading's start) may be at most this far ahead of the "
        "server's clock; later ones are refused with a 400 (clock skew allowance).",
    )
    device_time_max_age_s: int = Field(
        7 * 86400,
        ge=1,
        description="A reading older than this (by the server's clock) is refused with a 400: a backlog "
        "after a communications outage fits, a device clock reset to 1970 does not.",
    )
    nmi_claims: str = Field(
        "open",
        pattern="^(open|assigned)$",
        description="Which NMIs a client may bind with a ConnectionPoint write. open: one no other EndDevice "
        "holds and not assigned to another aggregator; assigned: only the NMI the operator bound to that "
        "EndDevice or assigned to its aggregator.",
    )

    compute_scheduler_address: str | None = Field(
        None,
        description="A Dask scheduler (tcp://host:8786, started with `dask scheduler`) that runs the "
        "per-network envelope computations on its workers. Unset: computed in the publisher's own "
        "process, or with compute_local_workers > 1 on an in-process Dask cluster of that many worker "
        "processes; no extra service either way (docs/utility-scale.md).",
    )
    compute_local_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes of the in-process compute cluster (no scheduler address); 1 "
        "computes in the publisher's process without Dask.",
    )
    compute_parallel_networks: int = Field(
        16,
        ge=1,
        le=1024,
        description="Networks computed at once on the Dask cluster (each publishes as soon as it is "
        "done); more than the workers keeps every worker busy.",
    )
    compute_connect_timeout_s: float = Field(
        10.0, gt=0, le=300, description="How long to wait for compute_scheduler_address to answer at start."
    )

    @model_validator(mode="after")
    def _proxy_needs_trust(self) -> Settings:
        if self.behind_proxy and not self.trusted_proxies:
            raise ValueError(
                "behind_proxy needs trusted_proxies: the addresses allowed to forward certificates"
            )
        return self

    @field_validator("roles", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """`serve,publish` (environment, --roles) or a JSON list; TOML gives a list already."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        """Each entry an address or network, so a typo fails at start rather than refusing every device."""
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("roles")
    @classmethod
    def _some_roles(cls, value: list[Role]) -> list[Role]:
        if not value:
            raise ValueError(f"name at least one role of {', '.join(ALL_ROLES)}")
        return [role for role in ALL_ROLES if role in value]  # canonical order, no repeats

    @field_validator("compute_scheduler_address")
    @classmethod
    def _scheduler_address(cls, value: str | None) -> str | None:
        """tcp://host:port or tls://host:port, so a typo fails at start, not at the first recomputation."""
        if value is None or not value.strip():
            return None
        text = value.strip()
        scheme, sep, rest = text.partition("://")
        host, colon, port = rest.rpartition(":")
        if not sep or scheme not in ("tcp", "tls") or not colon or not host.strip("[]") or "/" in rest:
            raise ValueError(f"{text!r} is not a Dask scheduler address like tcp://host:8786")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{text!r}: the port must be a number 1-65535, as in tcp://host:8786")
        return text

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("poll_rates_s")
    @classmethod
    def _merge_rates(cls, value: dict[str, int]) -> dict[str, int]:
        merged = dict(DEFAULT_POLL_RATES_S)
        merged.update(value)
        bad = [k for k, v in merged.items() if not isinstance(v, int) or v < 1]
        if bad:
            raise ValueError(f"poll rates must be whole seconds >= 1: {', '.join(bad)}")
        return merged

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _EnvSource(settings_cls), _TomlSource(settings_cls))

    @cached_property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'gridshare.db').resolve()}"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"


def load_settings(**given: Any) -> Settings:
    """Settings from the CLI's options (None = not given), the environment, the file and the defaults.

    Any problem is a SettingsError with one line naming the setting and where its value came from.
    """
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        rest = ".".join(str(p) for p in first["loc"][1:])
        setting = f"{field}.{rest}" if rest else field
        reason = first["msg"].removeprefix("Value error, ")
        if not field:  # a check across settings (behind_proxy needs trusted_proxies)
            raise SettingsError(f"settings: {reason}") from None
        raise SettingsError(f"setting {setting!r} ({_source_of(field, overrides)}): {reason}") from None


def _source_of(field: str, overrides: Mapping[str, Any]) -> str:
    """Where a setting's value came from, in the words an operator would look for it."""
    if field in overrides:
        return "command-line option"
    env_name = f"{ENV_PREFIX}{field.upper()}"
    if any(name.upper() == env_name for name in os.environ):
        return f"environment variable {env_name}"
    path, _named = config_path()
    if path.is_file():
        try:
            line = _line_of(path.read_text(encoding="utf-8"), field)
        except OSError:
            line = None
        if line:
            return f"{path} line {line}"
    return "default"

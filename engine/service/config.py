"""The daemon's settings: one YAML file plus ``ENGINE_…`` environment overrides, validated at start.

``load_settings(path)`` reads the file (``config/engine.yaml`` documents every key), applies the
environment (``ENGINE_MQTT__URL=mqtt://broker:1883``, nested keys joined by ``__``; values that are
lists or mappings are JSON), and validates everything once. Errors name the key, and the line when
it comes from the file. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from engine.compiled import ENV as PURE_PYTHON_ENV
from engine.core.settings import CoreSettings, core_settings_from_data
from engine.errors import ConfigError
from engine.model.messages import MAX_TOPIC_BYTES, check_topic_filter
from engine.model.timeutil import Duration1d, Duration1h, Duration1m, Duration7d, Duration366d
from engine.model.wording import dotted as dotted_path
from engine.model.wording import first_problem, type_name, unknown_field
from engine.model.yamlsource import Locator, load_file

ENV_PREFIX = "ENGINE_"
Event = Literal["opened", "updated", "resolved"]
FORMATS = ("generic", "tmf656", "tmf656-event", "pagerduty", "alertmanager")
EVENTS: tuple[Event, ...] = ("opened", "updated", "resolved")
MQTT_RECEIVER = "mqtt"  # the outbox's name for records published on mqtt.incident_topic


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS). Raises ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"expected mqtt://host:port or mqtts://host:port, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _topic_filter(value: str) -> str:
    check_topic_filter(value)  # ValueError: what is wrong ("'#' must be the last level of …")
    return value


TopicFilter = Annotated[str, AfterValidator(_topic_filter)]
"""An MQTT topic filter to subscribe to (``soc/alarms/#``), refused at load when the broker would
refuse it: so the error names the key, the list index and the line."""


def _publish_topic(value: str | None, what: str) -> str | None:
    """A topic the engine publishes on (None: a key that may be null): no wildcard, not empty, no
    NUL, not one of the broker's own ``$`` topics, at most 65,535 bytes. A broker refuses anything
    else, and the publisher would retry it for ever; ``what``: what the key is for."""
    if value is not None and (
        not value
        or "+" in value
        or "#" in value
        or "\x00" in value
        or value.startswith("$")
        or len(value.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES
    ):
        raise ValueError(
            f"{value!r} is not a topic to publish on (not empty, no + or # wildcards, no NUL, not"
            f" starting with $, at most {MAX_TOPIC_BYTES} bytes); {what}"
        )
    return value


def _existing(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory")
    return path


ExistingPath = Annotated[Path, AfterValidator(_existing)]
"""A ruleset file or folder: one that is missing is refused at load, naming the key and the line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Backoff(_Section):
    initial: Duration1h = 1.0
    max: Duration1h = 60.0
    factor: float = Field(2.0, ge=1.0)
    jitter: float = Field(0.2, ge=0.0, le=1.0)  # ± this fraction of each delay


class TlsSettings(_Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # skip certificate verification (lab use only)


class MqttSettings(_Section):
    enabled: bool = True  # false: HTTP ingest only (POST /events, /api/v2/alerts)
    url: str = "mqtt://127.0.0.1:1883"  # mqtt:// or mqtts://; user:password@ allowed
    client_id: str = "soc-engine"
    alarm_topics: tuple[TopicFilter, ...] = ("soc/alarms/#",)
    probe_topics: tuple[TopicFilter, ...] = ("soc/probes/#",)
    protocol: Literal["3.1.1", "5"] = "5"
    session_expiry: Duration366d = 86400.0  # v5: the broker keeps our session and queue this long
    receive_maximum: int = Field(1000, ge=1, le=65535)  # v5: unacknowledged messages in flight
    keepalive: int = Field(30, ge=5)
    username: str | None = None
    password: str | None = None
    tls: TlsSettings | None = None
    dead_letter_topic: str = "soc/deadletter"
    # records go to <incident_topic>/<incident_id>, QoS 1 (the "mqtt" receiver); null: not published
    incident_topic: str | None = "soc/incidents"
    reconnect: Backoff = Field(default_factory=Backoff)
    queue_size: int = Field(10000, ge=1)  # messages received but not yet journaled
    max_payload: int = Field(65536, ge=256)
    # Start-up catch-up: a marker published to <sync_topic>/<client_id> after subscribing comes back
    # behind the broker's backlog; timers that fell due while the daemon was down fire only once
    # everything before it is applied (or after catch_up_timeout). null: no marker, no waiting.
    sync_topic: str | None = "soc-engine/sync"
    catch_up_timeout: Duration1h = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_broker_url(v)
        return v

    @field_validator("alarm_topics", "probe_topics")
    @classmethod
    def _some_filter(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:  # the HTTP API routes what it is sent as if from the first filter
            raise ValueError("needs at least one MQTT topic filter (soc/alarms/#, soc/probes/#)")
        return v

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        if not v or "+" in v or "#" in v or "\x00" in v:
            raise ValueError(
                f"{v!r} is not a client id the engine can use (not empty, no + or # wildcards, no NUL):"
                " the start-up marker is published on <sync_topic>/<client_id>"
            )
        return v

    @field_validator("incident_topic")
    @classmethod
    def _incident_topic(cls, v: str | None) -> str | None:
        return _publish_topic(v, "null publishes no incident records on MQTT")

    @field_validator("dead_letter_topic")
    @classmethod
    def _dead_letter_topic(cls, v: str) -> str:
        _publish_topic(v, "dead letters are published on it")
        return v

    @field_validator("sync_topic")
    @classmethod
    def _sync_topic(cls, v: str | None) -> str | None:
        return _publish_topic(
            v, "the start-up marker is published on <sync_topic>/<client_id>; null sends none"
        )

    @property
    def host(self) -> str:
        return parse_broker_url(self.url).host

    @property
    def port(self) -> int:
        return parse_broker_url(self.url).port

    @property
    def credentials(self) -> tuple[str | None, str | None]:
        parsed = parse_broker_url(self.url)
        return self.username or parsed.username, self.password or parsed.password

    @property
    def uses_tls(self) -> bool:
        return parse_broker_url(self.url).tls or self.tls is not None


class StoreSettings(_Section):
    path: Path = Path("var/engine.sqlite")
    commit_interval: Duration1m = 0.02  # journal batches commit at least this often
    batch_size: int = Field(500, ge=1)  # items the core task applies at most per commit (and MQTT ack)
    batch_delay: Duration1m = 0.005  # … and the longest a batch's first item waits for more before it
    snapshot_interval: Duration1d = 60.0  # core state snapshot (and journal truncation) period
    snapshot_every: int = Field(50000, ge=100)  # … or after this many journal entries
    keep_journal: Duration366d = 0.0  # journal entries a snapshot covers stay this long (rules mine --store)
    keep_delivered: Duration366d = 7 * 86400.0  # delivered outbox rows are purged after this
    keep_dead_letters: Duration366d = 7 * 86400.0  # dead letters are purged after this…
    max_dead_letters: int = Field(100000, ge=100)  # … and the oldest beyond this many
    keep_explanations: Duration366d = 7 * 86400.0  # explanations of resolved incidents, this long…
    max_explanations: int = Field(2000, ge=10)  # … and at most this many (newest kept)

    @field_validator("path")
    @classmethod
    def _not_a_directory(cls, value: Path) -> Path:
        if value.is_dir():
            raise ValueError(f"{value} is a directory; store.path names the SQLite file (var/engine.sqlite)")
        return value


class HttpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port (tests)
    token: str | None = None  # bearer token required on every endpoint but /healthz and /readyz
    max_body: int = Field(1048576, ge=1024)
    dashboard: bool = True  # the SOC dashboard under /ui (docs/dashboard.md)


class Breaker(_Section):
    failures: int = Field(5, ge=1)  # consecutive failures that open the circuit
    cooldown: Duration1h = 30.0  # open this long, then one trial request


class ReceiverSettings(_Section):
    name: str
    url: str
    format: Literal["generic", "tmf656", "tmf656-event", "pagerduty", "alertmanager"] = "generic"
    headers: Mapping[str, str] = Field(default_factory=dict)
    timeout: Duration1h = 10.0
    priorities: tuple[int, ...] = (1, 2, 3, 4, 5)  # which priorities it gets (resolved always follows)
    events: tuple[Event, ...] = EVENTS
    secret: str | None = None  # HMAC-SHA256 signing key; unsigned when absent
    routing_key: str | None = None  # PagerDuty integration key
    retry: Backoff = Field(default_factory=lambda: Backoff(initial=1.0, max=300.0))
    dead_after: Duration366d = 86400.0  # undelivered this long → dead letter (never for `resolved`)
    breaker: Breaker = Field(default_factory=Breaker)
    concurrency: int = Field(4, ge=1, le=64)  # incidents delivered in parallel (each in order)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == MQTT_RECEIVER:
            raise ValueError(
                "receiver name 'mqtt' is reserved for the MQTT incident topic (mqtt.incident_topic);"
                " give this receiver another name"
            )
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(p not in (1, 2, 3, 4, 5) for p in v):
            raise ValueError("priorities are a non-empty list of 1..5")
        return v

    @model_validator(mode="after")
    def _pagerduty(self) -> ReceiverSettings:
        if self.format == "pagerduty" and not self.routing_key:
            raise ValueError("a pagerduty receiver needs routing_key (the integration key)")
        return self


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"  # auto: console on a terminal, else JSON


class ClusterSettings(_Section):
    """Scale-out on NATS JetStream (docs/scale-out.md). Off while ``servers`` is empty."""

    servers: tuple[str, ...] = ()  # nats://host:port of the JetStream cluster's nodes
    name: str | None = None  # this engine's member name (default: host-pid); KV key characters only
    partitions: int = Field(4, ge=1, le=1024)  # domain partitions (plus the one `global` partition)
    replicas: int = Field(3, ge=1, le=5)  # JetStream replicas of every stream and bucket
    lease_ttl: Duration1h = 6.0  # a partition whose owner stops renewing is free after this
    snapshot_interval: Duration1d = 30.0  # each owned partition's state is saved at least this often
    retention: Duration366d = 86400.0  # partition streams keep messages this long (> snapshot_interval)
    global_share: float = Field(0.05, gt=0.0, le=1.0)  # elements above this share of customers: global
    global_elements: tuple[str, ...] = ()  # elements always in the global partition

    @field_validator("servers")
    @classmethod
    def _servers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise ValueError(f"expected nats://host:port, got {url!r}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_=-]{1,64}", v):
            raise ValueError(f"a member name is 1-64 of A-Z a-z 0-9 _ = -, got {v!r}")
        return v

    @model_validator(mode="after")
    def _retention(self) -> ClusterSettings:
        if self.retention <= 2 * self.snapshot_interval:
            raise ValueError("retention must exceed twice snapshot_interval (replay starts at a snapshot)")
        return self


class EngineSettings(BaseSettings):
    core: CoreSettings = Field(default_factory=CoreSettings)
    topology: Path | None = None  # required by `engine run`
    rulesets: tuple[ExistingPath, ...] = ()  # files or folders; empty: the built-in default ruleset
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    receivers: tuple[ReceiverSettings, ...] = ()
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    shutdown_timeout: Duration1h = 10.0  # drain and flush at most this long on SIGTERM
    # `engine run` (and a cluster member) takes Python's full garbage collections over: at most
    # this often, when idle (engine/service/heap.py); 0: Python's own schedule
    gc_full_interval: Duration7d = 3600.0

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_parse_none_str="null",  # ENGINE_MQTT__INCIDENT_TOPIC=null is YAML's null, not a topic "null"
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed as init values); no .env or secrets dir.
        return (env_settings, init_settings)

    @field_validator("receivers")
    @classmethod
    def _unique_receivers(cls, v: tuple[ReceiverSettings, ...]) -> tuple[ReceiverSettings, ...]:
        first: dict[str, int] = {}
        for i, receiver in enumerate(v):
            if receiver.name in first:
                raise ValueError(
                    f"receiver names must be unique: {receiver.name!r} is the name of"
                    f" receivers[{first[receiver.name]}] and receivers[{i}]"
                )
            first[receiver.name] = i
        return v

    @field_validator("topology")
    @classmethod
    def _topology_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v}: {'is a directory, expected a file' if v.is_dir() else 'no such file'}")
        return v


def load_settings(
    path: str | Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EngineSettings:
    """The file (if any), then ``ENGINE_…`` variables, then ``overrides`` (from the command line)."""
    data: dict[str, Any] = {}
    locator: Locator | None = None
    source = str(path) if path is not None else "<defaults>"
    if path is not None:
        raw, locator = load_file(path)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(source, "", f"expected a mapping of settings, got {type_name(raw)}")
        data = _deep_copy(raw)
        base = Path(path).resolve().parent
        _resolve_paths(data, base)
    env = os.environ if environ is None else environ
    _refuse_unknown_variables(source, env)
    for dotted, value in (overrides or {}).items():
        _set(data, dotted.split("."), value)
    try:
        if environ is None:
            return EngineSettings(**data)
        saved = dict(os.environ)
        try:  # an explicit environment (tests): pydantic-settings reads os.environ
            for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
                del os.environ[key]
            os.environ.update({k: v for k, v in environ.items() if k.startswith(ENV_PREFIX)})
            return EngineSettings(**data)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    except SettingsError as exc:
        raise ConfigError(source, "environment", _unparsable_variable(exc, env)) from None
    except ValidationError as exc:
        loc, reason = first_problem(exc, EngineSettings)
        path_text = dotted_path(loc)
        line = locator.line(loc) if locator else None
        env_key = _env_key(loc)
        if env_key in env:
            where = f"{env_key} (environment): {path_text}"  # not its value: it may be a secret
        else:
            where = f"line {line}: {path_text}" if line else path_text
        raise ConfigError(source, where, reason) from None


def _env_key(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc if isinstance(p, str))


def env_names() -> list[str]:
    """The variables (or, for a section of settings, their prefixes) the settings read, in the
    order of the settings: ``ENGINE_CORE__…``, ``ENGINE_TOPOLOGY``, ``ENGINE_RULESETS`` …"""
    names = []
    for name, f in EngineSettings.model_fields.items():
        nested = isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
        names.append(ENV_PREFIX + name.upper() + ("__…" if nested else ""))
    return names


def _refuse_unknown_variables(source: str, env: Mapping[str, str]) -> None:
    """An ``ENGINE_…`` variable naming no section is a mistake (pydantic-settings would ignore it):
    ``ENGINE_HTTP_PORT=9000`` (one underscore) must not leave the port at its default in silence.
    The error names the variable and the valid names, as an unknown key of a file does.
    ``ENGINE_PURE_PYTHON`` is no setting: it picks the core's source over its compiled build
    (``engine.compiled``), read at import."""
    sections = set(EngineSettings.model_fields)
    for key in sorted(env):
        if not key.upper().startswith(ENV_PREFIX) or key.upper() == PURE_PYTHON_ENV:
            continue
        section = key[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if section not in sections:
            hint = ""
            for known in sorted(sections, key=len, reverse=True):
                if section.startswith(known + "_"):
                    rest = key[len(ENV_PREFIX) + len(known) + 1 :]
                    hint = f"; nested keys are joined by two underscores: {ENV_PREFIX}{known.upper()}__{rest}"
                    break
            raise ConfigError(source, f"{key} (environment)", unknown_field(None, env_names()) + hint)


def _unparsable_variable(exc: SettingsError, env: Mapping[str, str]) -> str:
    """pydantic-settings names only the section whose variable did not parse (lists and mappings
    are JSON): find the variable itself and say why."""
    import json  # noqa: PLC0415  (only on this error path)

    found = re.search(r'field "(\w+)"', str(exc))
    prefix = ENV_PREFIX + (found.group(1).upper() if found else "")
    for key in sorted(env):
        value = env[key]
        if key.upper().startswith(prefix) and value.lstrip()[:1] in ("[", "{"):
            try:
                json.loads(value)
            except ValueError as err:
                return f"{key}: not valid JSON ({err})"  # not the value: it may hold a secret
    return str(exc)


def _set(data: dict[str, Any], dotted: list[str], value: Any) -> None:
    node = data
    for part in dotted[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[dotted[-1]] = value


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Relative file paths in a config file are relative to that file's folder."""

    def fix(v: Any) -> Any:
        if isinstance(v, str) and v and not Path(v).is_absolute():
            return str(base / v)
        return v

    if "topology" in data:
        data["topology"] = fix(data["topology"])
    if isinstance(data.get("rulesets"), list):
        data["rulesets"] = [fix(v) for v in data["rulesets"]]
    store = data.get("store")
    if isinstance(store, dict) and "path" in store:
        store["path"] = fix(store["path"])
    tls = data.get("mqtt", {}).get("tls") if isinstance(data.get("mqtt"), dict) else None
    if isinstance(tls, dict):
        for key in ("ca_file", "cert_file", "key_file"):
            if key in tls:
                tls[key] = fix(tls[key])


def load_core_settings(path: str | Path | None) -> CoreSettings:
    if path is None:
        return CoreSettings()
    data, locator = load_file(path)
    return core_settings_from_data(data, str(path), locator)

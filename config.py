"""Service configuration, read from the environment once per process and validated up front.

Every error names the variable and the bad value, so a misconfigured deployment fails at start
with a message that says what to fix.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cpu_quota import default_intra_op_threads, usable_cpus

PROJECT_ROOT = Path(__file__).resolve().parent
# pyproject.toml's [project] version (a test checks that they agree); the protocols that report
# a server version (Roboflow's /info, KServe's /v2) say this one.
SERVICE_VERSION = "0.1.0"

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_IMAGES = 16
# 50 megapixels: above a 48 MP phone photo, far below what would exhaust a worker's memory.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
# The most pixels any image may have, whatever MAX_IMAGE_PIXELS says: image_io also hands it
# to OpenCV as its own decoding limit (a backstop behind the header check).
MAX_IMAGE_PIXELS_CEILING = 1 << 28

# LOG_FORMAT: `text` (one human-readable line per event) or `json` (one object per line).
LOG_FORMATS = ("text", "json")
# The gunicorn master serves the workers' metrics here (0: no metrics at all).
DEFAULT_METRICS_PORT = 9102
# The image repository: its files (and its SQLite database, unless REPO_DB_URL names another)
# live under DATA_DIR, by default a git-ignored folder of the checkout.
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
GPS_POLICIES = ("store", "hide", "strip")
DEFAULT_REPO_BUSY_TIMEOUT_MS = 5000
MIN_PAGE_TOKEN_KEY_CHARS = 32
_DB_URL = re.compile(r"^(sqlite|postgresql\+psycopg)://")
# Frigate's DeepStack detector writes each prediction into a fixed array of 20 rows and crashes
# (IndexError) on a 21st at confidence >= 0.4: the DeepStack routes answer at most this many,
# best first, unless DEEPSTACK_MAX_PREDICTIONS says otherwise.
DEFAULT_DEEPSTACK_MAX_PREDICTIONS = 20
# Route families that OPEN_ROUTES may open to callers without a token.
OPEN_ROUTE_FAMILIES = frozenset({"deepstack"})
# Whose requests an open route's token-less callers make (the image repository keeps it).
OPEN_ROUTES_OWNER = "anonymous"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration variable is missing or has a value the service cannot use."""


DEFAULT_OWNER = "default"
# `name:token` names the token's owner; anything else is a bare token of the default owner.
_OWNER_ENTRY = re.compile(r"^([A-Za-z0-9_.-]{1,64}):(.+)$")


@dataclass(frozen=True)
class ApiToken:
    """An accepted API token and the owner it authenticates (what the owner stores is theirs)."""

    secret: str
    owner: str = DEFAULT_OWNER

    @classmethod
    def parse(cls, entry: str) -> ApiToken:
        """One entry of API_TOKENS: `owner:token`, or a bare token of the default owner."""
        match = _OWNER_ENTRY.match(entry)
        return cls(match.group(2), match.group(1)) if match else cls(entry)

    def __repr__(self) -> str:
        # Never the secret: a config object may end up in a log line or a traceback.
        return f"ApiToken(owner={self.owner!r}, secret=<{len(self.secret)} characters>)"


@dataclass(frozen=True)
class ServiceConfig:
    # Entries of API_TOKENS as given (`owner:token` or a bare token); see `credentials`.
    api_tokens: tuple[str, ...] = ()
    auth_disabled: bool = False
    models_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "models")
    model_name: str = "yolox_nano"
    # Models each worker loads; empty: every model in models_dir whose weights are there.
    models: tuple[str, ...] = ()
    intra_op_threads: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_images_per_request: int = DEFAULT_MAX_IMAGES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    log_level: str = "INFO"
    log_format: str = "text"
    # 0 turns metrics off: nothing is recorded (the benchmark compares both).
    metrics_port: int = DEFAULT_METRICS_PORT
    # The image repository (repository/). None: no repository (its routes answer 503); the
    # environment always names one (DATA_DIR, default DEFAULT_DATA_DIR).
    data_dir: Path | None = None
    # SQLAlchemy URL of the repository's database; None: SQLite at DATA_DIR/repository.sqlite3.
    repo_db_url: str | None = field(default=None, repr=False)
    # What happens to the GPS position in uploaded photos' EXIF: stored and shown to the owner
    # (store), stored but never shown (hide), or removed from the stored file too (strip).
    gps_policy: str = "store"
    # How long a write waits for SQLite's lock before answering 503 with Retry-After.
    repo_busy_timeout_ms: int = DEFAULT_REPO_BUSY_TIMEOUT_MS
    # Key that signs list page tokens; None: a random key kept in DATA_DIR (made on first use).
    repo_page_token_key: str | None = field(default=None, repr=False)
    # Route families (OPEN_ROUTES) whose callers need no token, and the client networks they are
    # open to (OPEN_ROUTES_NETWORKS; empty: every address).
    open_routes: frozenset[str] = frozenset()
    open_routes_networks: tuple[IpNetwork, ...] = ()
    # Peers (TRUSTED_PROXIES) whose X-Forwarded-For header names the client; empty: none, the
    # peer address is the client.
    trusted_proxies: tuple[IpNetwork, ...] = ()
    deepstack_max_predictions: int = DEFAULT_DEEPSTACK_MAX_PREDICTIONS

    def __post_init__(self) -> None:
        if not self.auth_disabled and not self.api_tokens:
            raise ConfigError(
                "API_TOKENS is empty: set one or more comma-separated tokens, or set "
                "AUTH_DISABLED=1 to run without authentication (local development only)"
            )
        for entry in self.api_tokens:
            secret = ApiToken.parse(entry).secret
            if not entry or not secret or secret != secret.strip():
                raise ConfigError("API_TOKENS holds an empty token or one with spaces around it")
        checks = (
            ("INTRA_OP_THREADS", self.intra_op_threads, 1, 64),
            ("MAX_BODY_BYTES", self.max_body_bytes, 1024, 1 << 31),
            ("MAX_IMAGES_PER_REQUEST", self.max_images_per_request, 1, 256),
            ("MAX_IMAGE_PIXELS", self.max_image_pixels, 1, MAX_IMAGE_PIXELS_CEILING),
            ("METRICS_PORT", self.metrics_port, 0, 65535),
            ("REPO_BUSY_TIMEOUT_MS", self.repo_busy_timeout_ms, 0, 600_000),
            ("DEEPSTACK_MAX_PREDICTIONS", self.deepstack_max_predictions, 1, 1000),
        )
        for key, value, low, high in checks:
            if not low <= value <= high:
                raise ConfigError(f"{key}={value}: must be between {low} and {high}")
        if self.models and self.model_name not in self.models:
            raise ConfigError(
                f"MODEL_NAME={self.model_name!r} is not in MODELS={','.join(self.models)!r}: "
                "the default model must be one of the loaded models"
            )
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"LOG_LEVEL={self.log_level!r}: use DEBUG, INFO, WARNING or ERROR")
        unknown = sorted(self.open_routes - OPEN_ROUTE_FAMILIES)
        if unknown:
            raise ConfigError(
                f"OPEN_ROUTES={','.join(sorted(self.open_routes))!r}: unknown route family "
                f"{', '.join(unknown)}; the only one is {', '.join(sorted(OPEN_ROUTE_FAMILIES))}"
            )
        if self.open_routes_networks and not self.open_routes:
            raise ConfigError(
                "OPEN_ROUTES_NETWORKS is set but OPEN_ROUTES is empty: it would have no effect"
            )
        check_log_format(self.log_format)
        self._check_repository()

    def _check_repository(self) -> None:
        if self.gps_policy not in GPS_POLICIES:
            raise ConfigError(f"GPS_POLICY={self.gps_policy!r}: use {', '.join(GPS_POLICIES)}")
        if self.repo_db_url is not None and not _DB_URL.match(self.repo_db_url):
            # The URL may hold a password: only its scheme goes into the message.
            scheme = self.repo_db_url.split("://", 1)[0][:40]
            raise ConfigError(
                f"REPO_DB_URL has the scheme {scheme!r}: use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST/DB (psycopg 3)"
            )
        key = self.repo_page_token_key
        if key is not None and len(key) < MIN_PAGE_TOKEN_KEY_CHARS:
            raise ConfigError(
                f"REPO_PAGE_TOKEN_KEY has {len(key)} characters: use at least "
                f"{MIN_PAGE_TOKEN_KEY_CHARS} random ones (or leave it unset)"
            )

    @cached_property
    def credentials(self) -> tuple[ApiToken, ...]:
        return tuple(ApiToken.parse(entry) for entry in self.api_tokens)


def _int(environ: Mapping[str, str], key: str, default: int) -> int:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: must be an integer") from None


def _bool(environ: Mapping[str, str], key: str) -> bool:
    raw = environ.get(key, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{key}={raw!r}: use 1/true/yes/on or 0/false/no/off")


def _words(environ: Mapping[str, str], key: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in environ.get(key, "").split(",") if w.strip())


def _networks(environ: Mapping[str, str], key: str) -> tuple[IpNetwork, ...]:
    """Comma-separated addresses or CIDR networks (`192.168.0.0/16,10.1.2.3,::1`)."""
    networks = []
    for word in _words(environ, key):
        try:
            networks.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise ConfigError(
                f"{key}: {word[:60]!r} is not an IP address or network (like 192.168.0.0/16)"
            ) from None
    return tuple(networks)


def check_log_format(value: str) -> str:
    if value not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={value!r}: use {' or '.join(LOG_FORMATS)}")
    return value


def log_format(environ: Mapping[str, str]) -> str:
    """LOG_FORMAT, checked (gunicorn's logger class reads it too, before the app exists)."""
    return check_log_format(environ.get("LOG_FORMAT", "").strip().lower() or "text")


def _intra_op_default(environ: Mapping[str, str]) -> int:
    """The usable CPUs (cgroup quota, else CPU set) shared among gunicorn's workers."""
    try:
        return default_intra_op_threads(environ, usable_cpus())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load_config(environ: Mapping[str, str]) -> ServiceConfig:
    """Build the configuration from environment variables (see the README's table)."""
    tokens = tuple(t.strip() for t in environ.get("API_TOKENS", "").split(",") if t.strip())
    models_dir = environ.get("MODELS_DIR", "").strip()
    data_dir = environ.get("DATA_DIR", "").strip()
    return ServiceConfig(
        api_tokens=tokens,
        auth_disabled=_bool(environ, "AUTH_DISABLED"),
        models_dir=Path(models_dir) if models_dir else PROJECT_ROOT / "models",
        model_name=environ.get("MODEL_NAME", "").strip() or "yolox_nano",
        models=tuple(m.strip() for m in environ.get("MODELS", "").split(",") if m.strip()),
        intra_op_threads=(
            _int(environ, "INTRA_OP_THREADS", 1)
            if environ.get("INTRA_OP_THREADS", "").strip()
            else _intra_op_default(environ)
        ),
        max_body_bytes=_int(environ, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        max_images_per_request=_int(environ, "MAX_IMAGES_PER_REQUEST", DEFAULT_MAX_IMAGES),
        max_image_pixels=_int(environ, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
        log_level=environ.get("LOG_LEVEL", "").strip().upper() or "INFO",
        log_format=log_format(environ),
        metrics_port=_int(environ, "METRICS_PORT", DEFAULT_METRICS_PORT),
        data_dir=Path(data_dir) if data_dir else DEFAULT_DATA_DIR,
        repo_db_url=environ.get("REPO_DB_URL", "").strip() or None,
        gps_policy=environ.get("GPS_POLICY", "").strip().lower() or "store",
        repo_busy_timeout_ms=_int(environ, "REPO_BUSY_TIMEOUT_MS", DEFAULT_REPO_BUSY_TIMEOUT_MS),
        repo_page_token_key=environ.get("REPO_PAGE_TOKEN_KEY", "").strip() or None,
        open_routes=frozenset(word.lower() for word in _words(environ, "OPEN_ROUTES")),
        open_routes_networks=_networks(environ, "OPEN_ROUTES_NETWORKS"),
        trusted_proxies=_networks(environ, "TRUSTED_PROXIES"),
        deepstack_max_predictions=_int(
            environ, "DEEPSTACK_MAX_PREDICTIONS", DEFAULT_DEEPSTACK_MAX_PREDICTIONS
        ),
    )

"""Service configuration, read from the environment once per process and validated up front.

Every error names the variable and the bad value, so a misconfigured deployment fails at start
with a message that says what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_IMAGES = 16
# 32 megapixels per image: above the 12 to 24 MP a phone's camera app saves; decoding it takes
# about 100 MB. A request's images together may have twice that (MAX_REQUEST_PIXELS), so that
# one request cannot cost a worker more than a couple of such decodes.
DEFAULT_MAX_IMAGE_PIXELS = 32_000_000
DEFAULT_MAX_REQUEST_PIXELS = 64_000_000
# How often a worker whose models did not load tries again (seconds).
DEFAULT_MODEL_RETRY_S = 10
# The most pixels any image may have, whatever MAX_IMAGE_PIXELS says: image_io also hands it
# to OpenCV as its own decoding limit (a backstop behind the header check).
MAX_IMAGE_PIXELS_CEILING = 1 << 28

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
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    model_retry_s: int = DEFAULT_MODEL_RETRY_S
    log_level: str = "INFO"

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
            ("MAX_REQUEST_PIXELS", self.max_request_pixels, 1, 1 << 40),
            ("MODEL_RETRY_SECONDS", self.model_retry_s, 1, 3600),
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


# How long a client may take to send a request's head, and then its body (seconds); see
# gunicorn_worker.py. A client slower than that gets a 408 and the connection is closed.
DEFAULT_HEAD_TIMEOUT_S = 10
DEFAULT_BODY_TIMEOUT_S = 15
# How long writing a response may take before the connection is given up.
DEFAULT_SEND_TIMEOUT_S = 30


@dataclass(frozen=True)
class FrontConfig:
    """What the gunicorn worker (`gunicorn_worker.py`) needs to buffer requests: the deadlines
    of the head, the body and the response, and the body limit the service enforces."""

    head_timeout_s: int = DEFAULT_HEAD_TIMEOUT_S
    body_timeout_s: int = DEFAULT_BODY_TIMEOUT_S
    send_timeout_s: int = DEFAULT_SEND_TIMEOUT_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        checks = (
            ("REQUEST_HEAD_TIMEOUT", self.head_timeout_s, 1, 3600),
            ("REQUEST_BODY_TIMEOUT", self.body_timeout_s, 1, 3600),
            ("RESPONSE_SEND_TIMEOUT", self.send_timeout_s, 1, 3600),
            ("MAX_BODY_BYTES", self.max_body_bytes, 1024, 1 << 31),
        )
        for key, value, low, high in checks:
            if not low <= value <= high:
                raise ConfigError(f"{key}={value}: must be between {low} and {high}")


def load_front_config(environ: Mapping[str, str]) -> FrontConfig:
    return FrontConfig(
        head_timeout_s=_int(environ, "REQUEST_HEAD_TIMEOUT", DEFAULT_HEAD_TIMEOUT_S),
        body_timeout_s=_int(environ, "REQUEST_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT_S),
        send_timeout_s=_int(environ, "RESPONSE_SEND_TIMEOUT", DEFAULT_SEND_TIMEOUT_S),
        max_body_bytes=_int(environ, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
    )


def load_config(environ: Mapping[str, str]) -> ServiceConfig:
    """Build the configuration from environment variables (see the README's table)."""
    tokens = tuple(t.strip() for t in environ.get("API_TOKENS", "").split(",") if t.strip())
    models_dir = environ.get("MODELS_DIR", "").strip()
    return ServiceConfig(
        api_tokens=tokens,
        auth_disabled=_bool(environ, "AUTH_DISABLED"),
        models_dir=Path(models_dir) if models_dir else PROJECT_ROOT / "models",
        model_name=environ.get("MODEL_NAME", "").strip() or "yolox_nano",
        models=tuple(m.strip() for m in environ.get("MODELS", "").split(",") if m.strip()),
        intra_op_threads=_int(environ, "INTRA_OP_THREADS", 1),
        max_body_bytes=_int(environ, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        max_images_per_request=_int(environ, "MAX_IMAGES_PER_REQUEST", DEFAULT_MAX_IMAGES),
        max_image_pixels=_int(environ, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
        max_request_pixels=_int(environ, "MAX_REQUEST_PIXELS", DEFAULT_MAX_REQUEST_PIXELS),
        model_retry_s=_int(environ, "MODEL_RETRY_SECONDS", DEFAULT_MODEL_RETRY_S),
        log_level=environ.get("LOG_LEVEL", "").strip().upper() or "INFO",
    )

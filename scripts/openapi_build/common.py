"""What every part of the build shares: the error it raises, the JSON type and small helpers."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

# A route rule's variable, `<name>` or `<converter:name>`.
RULE_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

Json = Any


class BuildError(Exception):
    """The fragments and the code do not fit together; the message says where."""


def camel(name: str) -> str:
    """`score_threshold` -> `ScoreThreshold`, `maxResults` -> `MaxResults`."""
    parts = re.split(r"_+", name)
    return "".join(part[:1].upper() + part[1:] for part in parts)


def number(value: float) -> float | int:
    """A bound or default as JSON writes it best: 0 rather than 0.0."""
    return int(value) if float(value).is_integer() else value


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def codes_list(codes: Sequence[str]) -> str:
    return ", ".join(f"`{code}`" for code in codes)


def openapi_path(rule: str) -> str:
    return RULE_VARIABLE.sub(r"{\1}", rule)


def renderer_name(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"

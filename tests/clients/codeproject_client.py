"""codeproject-ai-api 0.1 (CodeProject.AI's Python SDK, used by Viseron and CodeProject's Home
Assistant integration). It has no credential at all: it needs OPEN_ROUTES=deepstack, and
against a server without it every call is refused, which it reports as a server error."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import codeprojectai.core as cpai
from _common import arguments, emit, error_text

args = arguments()
where = urlsplit(args.url)
closed = urlsplit(args.closed_url) if args.closed_url else None
dog, bus = Path(args.dog).read_bytes(), Path(args.bus).read_bytes()

default = cpai.CodeProjectAIObject(where.hostname, where.port, timeout=60, min_confidence=0.4)
custom = cpai.CodeProjectAIObject(
    where.hostname, where.port, timeout=60, min_confidence=0.4, custom_model=args.model
)
unknown = cpai.CodeProjectAIObject(where.hostname, where.port, timeout=60, custom_model="nope")
result = {
    "dog": cpai.get_objects(default.detect(dog)),
    "bus": cpai.get_objects_summary(custom.detect(bus)),
    "unknown_model": error_text(lambda: unknown.detect(dog)),
}
if closed is not None:
    refused = cpai.CodeProjectAIObject(closed.hostname, closed.port, timeout=60)
    result["no_key_on_a_closed_server"] = error_text(lambda: refused.detect(dog))
emit(result)

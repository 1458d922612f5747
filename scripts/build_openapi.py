"""Build openapi.json from the code's own tables and the hand-written fragments in openapi/.

    .venv/bin/python scripts/build_openapi.py          write openapi.json
    .venv/bin/python scripts/build_openapi.py --check  exit 1, with a diff, if it is stale

The script imports only the standard library and the service's own modules (run it with the
virtual environment's python); its parts are the modules of scripts/openapi_build/, this file
writes and checks the document. What comes from where:

- paths: `serve_http.ROUTES`. Each route is one operation: its rule with `<name>` written
  `{name}` (that path parameter is the fragments' `in: path` parameter of that name), its
  method, no security when the route is `public` and a 401 when it is not, and its error
  responses in the shape of the route's `error_body` (the DeepStack route answers with
  DeepStack's error body, every other route with Google's envelope).
- detection parameters: `utils_serve.PARAMETERS` (spellings, number or integer, bounds) with
  the defaults of `DetectionParams()`, plus `CLASSES_FIELDS` and `AGNOSTIC_FIELDS`: one schema
  per parameter, the properties of the request and response schemas that carry them, and the
  query parameters.
- errors: `errors.error_classes()` for the `ErrorReason` enum, the status of each error
  response and its example (rendered by the route's own `error_body`); `google.STATUS_BY_HTTP`
  for the `GoogleStatusName` enum; `google.FEATURE_TYPES` for `GoogleFeatureType`.
- limits and defaults: `config` (DEFAULT_MAX_IMAGES, DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_IMAGE_PIXELS), `native.ACCEPTABLE` and `native.MAX_SIDE_RANGE`,
  `deepstack.DEFAULTS` and `deepstack.KEY_FIELD`.
- prose and examples: the fragments. There is one per dialect module (openapi/native.json,
  google.json, deepstack.json, roboflow.json, kserve.json, doods.json) and openapi/service.json
  for what belongs to none (the document's info, security schemes, headers, the probes and the
  service-wide error envelope).
  The layout follows `dialects/`: a fragment describes what its module parses and renders, so
  a change to a protocol touches its module and its fragment, and a new protocol is a module,
  its lines in the route table and one fragment. Each example is written once, in the
  fragment of the shape it shows, and used by `$ref` (the cat photo only in google.json).

A fragment is a JSON object with any of these keys:

- `document` (one fragment only): the top of the document (openapi, info, servers, tags...).
- `operations`: `{path: {method: operation}}`, the prose of each route's operation; every
  route needs one, and each one must be a route.
- `components`: merged into the document's components; a name may be defined once.
- `parameterDescriptions`: `{DetectionParams attribute: text}`, one for each parameter.
- `errorShape`: how the routes whose `error_body` is `renderer` (its module and name) answer
  an error: the `schema` of the body, the `prefix` of the response names, and `responses`:
  `{error code: {description, example: {code, message}, headers}}`, one response component
  (prefix + the code in CamelCase) each; the example is optional.

Directives, replaced by what they stand for:

- `"x-errors": [error code, ...]` in an operation: its error responses (the 401 of a route
  that needs a token comes from the route table).
- `"x-query-parameters": true` in an operation: the detection parameters as query parameters,
  before the operation's own.
- `"x-parameters": set` among a schema's properties: the detection parameters, in its place,
  as `features` (JSON: every spelling, and the rule against giving two of one parameter),
  `google-features` (JSON, the documented spellings), `fields` (text: form fields and the
  query) or `applied` (the values a response reports, all required).
- `{{name}}` in any string or key: a value from `placeholders()`; a string that is only a
  placeholder becomes the value itself (a number or a list). Every placeholder must be used.

The output is deterministic: components sorted by name, everything else in the order of the
code's tables and of the fragments, and a final newline. The upper levels are indented by two
spaces and each operation and each component is one line (LINE_DEPTH): a diff then names what
changed, and the document is small to serve (the fragments are the readable source).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openapi_build.common import BuildError, Json
from openapi_build.document import REPO_ROOT, build

OUTPUT = REPO_ROOT / "openapi.json"
# Containers this deep are written on one line: each operation, each path's parameter list and
# each component (document -> paths -> path -> operation; components -> kind -> component).
LINE_DEPTH = 3
INDENT = "  "


def render(document: Mapping[str, Json]) -> str:
    """The document's upper levels indented, and below them each operation, path parameter
    list and component on one line of its own (see LINE_DEPTH)."""

    def write(value: Json, depth: int) -> str:
        if depth >= LINE_DEPTH or not isinstance(value, dict | list) or not value:
            return json.dumps(value, ensure_ascii=False)
        pad = INDENT * (depth + 1)
        if isinstance(value, dict):
            lines = [
                f"{pad}{json.dumps(k, ensure_ascii=False)}: {write(v, depth + 1)}"
                for k, v in value.items()
            ]
            opening, closing = "{", "}"
        else:
            lines = [f"{pad}{write(v, depth + 1)}" for v in value]
            opening, closing = "[", "]"
        return opening + "\n" + ",\n".join(lines) + "\n" + INDENT * depth + closing

    return write(document, 0) + "\n"


def check(built: str, path: Path) -> int:
    committed = path.read_text(encoding="utf-8") if path.is_file() else ""
    if committed == built:
        print(f"{path.name} is up to date")
        return 0
    diff = list(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            built.splitlines(keepends=True),
            f"{path.name} (committed)",
            f"{path.name} (built)",
        )
    )
    added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    shown, width = 60, 160  # a changed component is one long line: show where it starts
    for line in diff[:shown]:
        line = line.rstrip("\n")
        print(line if len(line) <= width else f"{line[:width]}... ({len(line)} characters)")
    if len(diff) > shown:
        print(f"... {len(diff) - shown} more diff lines")
    print(
        f"{path.name} differs from the build (+{added} -{removed} lines): "
        "run .venv/bin/python scripts/build_openapi.py and commit the result"
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        built = render(build())
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return check(built, args.output)
    args.output.write_text(built, encoding="utf-8")
    print(f"wrote {args.output.name} ({len(built.encode())} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

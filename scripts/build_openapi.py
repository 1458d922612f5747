"""Build openapi.json from the code's own tables and the hand-written fragments in openapi/.

    .venv/bin/python scripts/build_openapi.py          write openapi.json
    .venv/bin/python scripts/build_openapi.py --check  exit 1, with a diff, if it is stale

The script imports only the standard library and the service's own modules (run it with the
virtual environment's python). What comes from where:

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
  google.json, deepstack.json, roboflow.json, kserve.json, doods.json) and
  openapi/service.json for what belongs to none (the document's info, security schemes,
  headers, the probes and the service-wide error envelope).
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
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import config
import errors
import serve_http
import utils_serve
from detection_types import DetectionParams
from dialects import deepstack, google, native, roboflow

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = REPO_ROOT / "openapi.json"
FRAGMENTS_DIR = REPO_ROOT / "openapi"
FRAGMENTS = (
    "service.json",
    "native.json",
    "google.json",
    "deepstack.json",
    "roboflow.json",
    "kserve.json",
    "doods.json",
)
# Every path takes the caller's request id (serve_http's before_request hook reads it) and
# every response carries one.
REQUEST_ID_PARAMETER = {"$ref": "#/components/parameters/RequestId"}
REQUEST_ID_HEADER = "X-Request-Id"
# The feature field that picks the model (`google.parse_batch` and the form fields).
MODEL_FIELD = "model"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
OPERATION_KEYS = ("operationId", "summary", "description", "tags", "security", "parameters")
COMPONENT_KEYS = (
    "schemas",
    "responses",
    "parameters",
    "examples",
    "requestBodies",
    "headers",
    "securitySchemes",
)
# Containers this deep are written on one line: each operation, each path's parameter list and
# each component (document -> paths -> path -> operation; components -> kind -> component).
LINE_DEPTH = 3
INDENT = "  "
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_RULE_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

Json = Any


class BuildError(Exception):
    """The fragments and the code do not fit together; the message says where."""


# --- Small helpers


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
    return _RULE_VARIABLE.sub(r"{\1}", rule)


def renderer_name(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


# --- Values from the code's tables


def error_class_by_code() -> dict[str, type[errors.ApiError]]:
    classes = {cls.code: cls for cls in errors.error_classes()}
    if len(classes) != len(errors.error_classes()):
        raise BuildError("two error classes share a code")
    return classes


def errors_by_status() -> str:
    """`400 `bad_request`, `invalid_json`, ...; 401 `unauthenticated`; ...` from the tree."""
    by_status: dict[int, list[str]] = {}
    for cls in errors.error_classes():
        by_status.setdefault(cls.status, []).append(cls.code)
    return "; ".join(f"{status} {codes_list(by_status[status])}" for status in sorted(by_status))


def per_image_errors() -> str:
    """The per-image errors by their google.rpc.Code number, as `image_status` writes them."""
    by_number: dict[tuple[int, str], list[str]] = {}
    for cls in utils_serve.PER_IMAGE_ERRORS:
        name, code_number = google.STATUS_BY_HTTP.get(cls.status, google.UNKNOWN_STATUS)
        by_number.setdefault((code_number, name), []).append(cls.code)
    return "; ".join(
        f"{code_number} ({name}) for {codes_list(codes)}"
        for (code_number, name), codes in sorted(by_number.items())
    )


def google_status_names() -> list[str]:
    """Every status name `error_envelope` can write, in google.rpc.Code order."""
    statuses = {*google.STATUS_BY_HTTP.values(), google.UNKNOWN_STATUS}
    return [name for name, _ in sorted(statuses, key=lambda status: status[1])]


def google_status_table() -> str:
    by_name: dict[str, list[int]] = {}
    for http_status, (name, _) in sorted(google.STATUS_BY_HTTP.items()):
        by_name.setdefault(name, []).append(http_status)
    return "; ".join(
        f"{', '.join(map(str, statuses))}: `{name}`" for name, statuses in by_name.items()
    )


def public_paths() -> str:
    """`/a`, `/b` and `/c`: the routes that need no token."""
    paths = [f"`{openapi_path(route.rule)}`" for route in serve_http.ROUTES if route.public]
    return ", ".join(paths[:-1]) + " and " + paths[-1] if len(paths) > 1 else "".join(paths)


def placeholders() -> dict[str, Json]:
    """The values fragments may name as `{{name}}`."""
    defaults = DetectionParams()
    low_side, high_side = native.MAX_SIDE_RANGE
    return {
        "max_images": config.DEFAULT_MAX_IMAGES,
        "max_body_bytes": config.DEFAULT_MAX_BODY_BYTES,
        "max_body_mib": f"{config.DEFAULT_MAX_BODY_BYTES / 2**20:g}",
        "max_image_megapixels": f"{config.DEFAULT_MAX_IMAGE_PIXELS / 1e6:g}",
        "error_codes": [cls.code for cls in errors.error_classes()],
        "errors_by_status": errors_by_status(),
        "per_image_errors": per_image_errors(),
        "google_status_names": google_status_names(),
        "google_status_table": google_status_table(),
        "feature_type_names": [name for _, name in sorted(google.FEATURE_TYPES.items())],
        "feature_type_numbers": sorted(google.FEATURE_TYPES),
        "output_formats": [mimetype.split("/")[1] for mimetype in native.ACCEPTABLE],
        "max_side_low": low_side,
        "max_side_high": high_side,
        "public_paths": public_paths(),
        "deepstack_key_field": deepstack.KEY_FIELD,
        "deepstack_score_threshold": deepstack.DEFAULTS.score_threshold,
        "deepstack_max_predictions": config.DEFAULT_DEEPSTACK_MAX_PREDICTIONS,
        "roboflow_confidence": roboflow.DEFAULTS.score_threshold,
        "roboflow_iou": roboflow.DEFAULTS.nms_iou_threshold,
        "roboflow_max_detections": roboflow.DEFAULTS.max_results,
        "score_threshold_low": number(parameter("score_threshold").low),
        "score_threshold_high": number(parameter("score_threshold").high),
        "score_threshold_default": defaults.score_threshold,
    }


def parameter(attribute: str) -> utils_serve.Parameter:
    for candidate in utils_serve.PARAMETERS:
        if candidate.attribute == attribute:
            return candidate
    raise BuildError(f"no parameter {attribute} in utils_serve.PARAMETERS")


def substitute(node: Json, values: Mapping[str, Json], used: set[str]) -> Json:
    """Replace every `{{name}}` in the strings (and keys) of a fragment."""

    def text(value: str) -> Json:
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return lookup(whole.group(1))
        return _PLACEHOLDER.sub(lambda match: str(lookup(match.group(1))), value)

    def lookup(name: str) -> Json:
        if name not in values:
            raise BuildError(f"unknown placeholder {{{{{name}}}}}")
        used.add(name)
        return values[name]

    if isinstance(node, dict):
        return {text(key): substitute(value, values, used) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(value, values, used) for value in node]
    if isinstance(node, str):
        return text(node)
    return node


# --- Detection parameters


class ParameterSets:
    """The detection parameters as schemas, property sets and query parameters."""

    def __init__(self, descriptions: Mapping[str, str]) -> None:
        attributes = [p.attribute for p in utils_serve.PARAMETERS]
        if sorted(descriptions) != sorted(attributes):
            raise BuildError(
                f"parameterDescriptions must describe exactly {', '.join(attributes)}; "
                f"it has {', '.join(descriptions)}"
            )
        self.descriptions = descriptions

    def schemas(self) -> dict[str, Json]:
        """One schema per parameter, named after its DetectionParams attribute."""
        defaults = DetectionParams()
        built: dict[str, Json] = {}
        for p in utils_serve.PARAMETERS:
            default = getattr(defaults, p.attribute)
            built[camel(p.attribute)] = {
                "type": "integer" if p.kind is int else "number",
                "minimum": number(p.low),
                "maximum": number(p.high),
                "default": default,
                "description": f"{self.descriptions[p.attribute]} Default {json.dumps(default)}; "
                "an explicit 0 is honoured.",
            }
        return built

    def _documented(self, classes: str, agnostic: str) -> dict[str, Json]:
        properties: dict[str, Json] = {
            p.spellings[0]: schema_ref(camel(p.attribute)) for p in utils_serve.PARAMETERS
        }
        properties[MODEL_FIELD] = schema_ref("Model")
        properties[utils_serve.CLASSES_FIELDS[0]] = schema_ref(classes)
        properties[utils_serve.AGNOSTIC_FIELDS[0]] = schema_ref(agnostic)
        return properties

    def properties(self, style: str) -> tuple[dict[str, Json], dict[str, Json]]:
        """(properties, other keywords) of a property set."""
        if style == "fields":
            return self._documented("ClassesText", "AgnosticNmsText"), {}
        if style == "google-features":
            return self._documented("Classes", "AgnosticNms"), {}
        if style == "applied":
            properties = {
                p.spellings[0]: {
                    "type": "integer" if p.kind is int else "number",
                    "minimum": number(p.low),
                    "maximum": number(p.high),
                }
                for p in utils_serve.PARAMETERS
            }
            return properties, {"required": list(properties)}
        if style == "features":
            return self._features()
        raise BuildError(f"unknown x-parameters set {style!r}")

    def _features(self) -> tuple[dict[str, Json], dict[str, Json]]:
        groups: list[tuple[tuple[str, ...], dict[str, str]]] = [
            (p.spellings, schema_ref(camel(p.attribute))) for p in utils_serve.PARAMETERS
        ]
        groups.append(((MODEL_FIELD,), schema_ref("Model")))
        groups.append((utils_serve.CLASSES_FIELDS, schema_ref("Classes")))
        groups.append((utils_serve.AGNOSTIC_FIELDS, schema_ref("AgnosticNms")))
        properties: dict[str, Json] = {}
        exclusive: list[Json] = []
        for spellings, ref in groups:
            first, *aliases = spellings
            properties[first] = ref
            for alias in aliases:
                same = f"Same as `{first}`."
                properties[alias] = {**ref, "description": same}
                exclusive.append({"required": [first, alias]})
        return properties, {"not": {"anyOf": exclusive}} if exclusive else {}

    def query_parameters(self) -> dict[str, Json]:
        """`Query_<name>`: the `fields` set as query parameters."""
        properties, _ = self.properties("fields")
        return {
            f"Query_{name}": {"name": name, "in": "query", "schema": schema}
            for name, schema in properties.items()
        }


def expand_parameter_sets(node: Json, sets: ParameterSets) -> Json:
    """Replace `x-parameters` in each schema's properties by the properties it names, in its
    place, and add the keywords that come with them (`required`, `not`) to the schema."""
    if isinstance(node, list):
        return [expand_parameter_sets(value, sets) for value in node]
    if not isinstance(node, dict):
        return node
    expanded = {key: expand_parameter_sets(value, sets) for key, value in node.items()}
    own = expanded.get("properties")
    if not isinstance(own, dict) or "x-parameters" not in own:
        return expanded
    style = own["x-parameters"]
    generated, keywords = sets.properties(style)
    properties: dict[str, Json] = {}
    for name, value in own.items():
        if name == "x-parameters":
            properties.update({k: v for k, v in generated.items() if k not in own})
        else:
            properties[name] = value
    expanded["properties"] = properties
    for keyword, value in keywords.items():
        if keyword == "required":
            required = {*expanded.get("required", []), *value}
            expanded["required"] = [name for name in properties if name in required]
        elif keyword in expanded:
            raise BuildError(f"x-parameters {style!r} sets {keyword}, which the schema has")
        else:
            expanded[keyword] = value
    return expanded


# --- Errors


class ErrorShape:
    """How the routes with one `error_body` renderer answer errors: their response components."""

    def __init__(self, spec: Mapping[str, Json], renderer: Callable[[errors.ApiError], Json]):
        self.schema: str = spec["schema"]
        self.prefix: str = spec["prefix"]
        self.responses: Mapping[str, Json] = spec["responses"]
        self.renderer = renderer
        unknown = sorted(set(self.responses) - set(error_class_by_code()))
        if unknown:
            raise BuildError(f"{spec['renderer']}: no error class has the code {unknown}")

    def response_name(self, code: str) -> str:
        if code not in self.responses:
            raise BuildError(f"{self.schema}: no response documented for the error {code!r}")
        return self.prefix + camel(code)

    def components(self) -> dict[str, Json]:
        """One response per documented error; its example (if the fragment gives one) is
        rendered by the dialect's own renderer, so it has the status and codes it would have."""
        classes = error_class_by_code()
        built: dict[str, Json] = {}
        for code, spec in self.responses.items():
            media: dict[str, Json] = {"schema": schema_ref(self.schema)}
            if "example" in spec:
                example_class = classes.get(spec["example"]["code"], errors.ApiError)
                if not issubclass(example_class, classes[code]):
                    raise BuildError(f"the example of {code} is not a {code} error")
                media["example"] = self.renderer(example_class(spec["example"]["message"]))
            built[self.response_name(code)] = {
                "description": spec["description"],
                "headers": spec.get("headers", {}),
                "content": {"application/json": media},
            }
        return built


def error_renderers() -> dict[str, Callable[[errors.ApiError], Json]]:
    return {renderer_name(route.error_body): route.error_body for route in serve_http.ROUTES}


# --- Operations


def build_operation(
    route: serve_http.Route,
    method: str,
    spec: Mapping[str, Json],
    shape: ErrorShape,
    sets: ParameterSets,
) -> dict[str, Json]:
    spec = dict(spec)
    parameters: list[Json] = []
    if spec.pop("x-query-parameters", False):
        parameters += [
            {"$ref": f"#/components/parameters/{name}"} for name in sets.query_parameters()
        ]
    parameters += spec.pop("parameters", [])
    error_codes = spec.pop("x-errors", [])
    if not route.public:
        error_codes = [errors.Unauthenticated.code, *error_codes]
    responses = dict(spec.pop("responses", {}))
    classes = error_class_by_code()
    for code in error_codes:
        if code not in classes:
            raise BuildError(f"{method.upper()} {route.rule}: no error class has the code {code!r}")
        status = str(classes[code].status)
        if status in responses:
            raise BuildError(f"{method.upper()} {route.rule}: two responses for {status}")
        responses[status] = {"$ref": f"#/components/responses/{shape.response_name(code)}"}
    operation: dict[str, Json] = {key: spec.pop(key) for key in OPERATION_KEYS if key in spec}
    if route.public:
        operation["security"] = []
    if parameters:
        operation["parameters"] = parameters
    operation.update(spec)  # requestBody and anything else, in the fragment's order
    operation["responses"] = dict(sorted(responses.items()))
    return {key: operation[key] for key in (*OPERATION_KEYS, *operation) if key in operation}


def path_parameters(rule: str, components: Mapping[str, Json]) -> list[Json]:
    """The components/parameters entry for each variable of a rule."""
    found = []
    for variable in _RULE_VARIABLE.findall(rule):
        names = [
            name
            for name, p in components["parameters"].items()
            if p.get("in") == "path" and p.get("name") == variable
        ]
        if len(names) != 1:
            raise BuildError(f"{rule}: need one path parameter {variable!r}, found {names}")
        found.append({"$ref": f"#/components/parameters/{names[0]}"})
    return found


def build_paths(
    operations: Mapping[str, Mapping[str, Json]],
    shapes: Mapping[str, ErrorShape],
    components: Mapping[str, Json],
    sets: ParameterSets,
) -> dict[str, Json]:
    paths: dict[str, Json] = {}
    served: set[tuple[str, str]] = set()
    for route in serve_http.ROUTES:
        path = openapi_path(route.rule)
        item = paths.setdefault(path, {})
        shape = shapes[renderer_name(route.error_body)]
        for method in (m.lower() for m in route.methods):
            served.add((path, method))
            spec = operations.get(path, {}).get(method)
            if spec is None:
                raise BuildError(f"no fragment describes {method.upper()} {path}")
            item[method] = build_operation(route, method, spec, shape, sets)
        item["parameters"] = [*path_parameters(route.rule, components), REQUEST_ID_PARAMETER]
    described = {(path, method) for path, methods in operations.items() for method in methods}
    unserved = sorted(f"{method.upper()} {path}" for path, method in described - served)
    if unserved:
        raise BuildError(f"fragments describe routes that are not served: {', '.join(unserved)}")
    return paths


# --- The document


def load_fragments() -> dict[str, dict[str, Json]]:
    return {
        name: json.loads((FRAGMENTS_DIR / name).read_text(encoding="utf-8")) for name in FRAGMENTS
    }


def merge_into(target: dict[str, Json], source: Mapping[str, Json], where: str) -> None:
    for name, value in source.items():
        if name in target:
            raise BuildError(f"{where}: {name} is defined twice")
        target[name] = value


def add_request_id_headers(responses: Json) -> None:
    """Every response object (inline or a component) says it carries X-Request-Id."""
    header = {REQUEST_ID_HEADER: {"$ref": f"#/components/headers/{REQUEST_ID_HEADER}"}}
    for status, response in responses.items():
        if "$ref" not in response:
            headers = {**header, **response.get("headers", {})}
            rest = {k: v for k, v in response.items() if k not in ("description", "headers")}
            responses[status] = {"description": response["description"], "headers": headers, **rest}


def check_refs(document: Json) -> None:
    def walk(node: Json) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for ref in sorted(set(walk(document))):
        target = document
        for part in ref.removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise BuildError(f"$ref {ref} names nothing")
            target = target[part]


def build(sources: Mapping[str, Json] | None = None) -> dict[str, Json]:
    """The document, from the fragment files (or `sources`, fragments by file name)."""
    values = placeholders()
    used: set[str] = set()
    if sources is None:
        sources = load_fragments()
    fragments = {name: substitute(fragment, values, used) for name, fragment in sources.items()}
    descriptions: dict[str, str] = {}
    renderers = error_renderers()
    shapes: dict[str, ErrorShape] = {}
    operations: dict[str, dict[str, Json]] = {}
    components: dict[str, dict[str, Json]] = {key: {} for key in COMPONENT_KEYS}
    for name, fragment in fragments.items():
        merge_into(descriptions, fragment.get("parameterDescriptions", {}), name)
        for path, methods in fragment.get("operations", {}).items():
            merge_into(operations.setdefault(path, {}), methods, f"{name} {path}")
        if "errorShape" in fragment:
            spec = fragment["errorShape"]
            if spec["renderer"] not in renderers:
                raise BuildError(f"{name}: no route answers errors with {spec['renderer']}")
            shapes[spec["renderer"]] = ErrorShape(spec, renderers[spec["renderer"]])
        for key, entries in fragment.get("components", {}).items():
            if key not in components:
                raise BuildError(f"{name}: unknown components key {key}")
            merge_into(components[key], entries, f"{name} components/{key}")
    if set(values) - used:
        raise BuildError(f"placeholders no fragment uses: {sorted(set(values) - used)}")
    missing_shapes = set(renderers) - set(shapes)
    if missing_shapes:
        raise BuildError(f"no fragment has the errorShape of {sorted(missing_shapes)}")

    sets = ParameterSets(descriptions)
    merge_into(components["schemas"], sets.schemas(), "detection parameters")
    merge_into(components["parameters"], sets.query_parameters(), "query parameters")
    for renderer, shape in shapes.items():
        merge_into(components["responses"], shape.components(), renderer)
    paths = build_paths(operations, shapes, components, sets)

    tops = [fragment["document"] for fragment in fragments.values() if "document" in fragment]
    if len(tops) != 1:
        raise BuildError(f"one fragment must hold the document's top, {len(tops)} do")
    document: dict[str, Json] = dict(tops[0])
    schemes = components["securitySchemes"]
    document["security"] = [{name: []} for name in schemes]
    document["paths"] = paths
    document["components"] = {
        key: dict(sorted(components[key].items())) for key in COMPONENT_KEYS if components[key]
    }
    document = expand_parameter_sets(document, sets)
    for item in document["paths"].values():
        for method in sorted(item.keys() & HTTP_METHODS):
            add_request_id_headers(item[method]["responses"])
    add_request_id_headers(document["components"]["responses"])
    check_refs(document)
    order = ("openapi", "info", "jsonSchemaDialect", "servers", "security", "tags")
    return {key: document[key] for key in (*order, *document) if key in document}


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

"""The document: the fragments merged with what the code's tables give, checked whole."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from .common import BuildError, Json
from .operations import ErrorShape, build_paths, error_renderers
from .parameters import ParameterSets, expand_parameter_sets
from .values import placeholders, substitute

REPO_ROOT = Path(__file__).resolve().parents[2]
FRAGMENTS_DIR = REPO_ROOT / "openapi"
FRAGMENTS = (
    "service.json",
    "native.json",
    "google.json",
    "deepstack.json",
    "roboflow.json",
    "kserve.json",
    "doods.json",
    "repository.json",
    "ui.json",
)
REQUEST_ID_HEADER = "X-Request-Id"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
COMPONENT_KEYS = (
    "schemas",
    "responses",
    "parameters",
    "examples",
    "requestBodies",
    "headers",
    "securitySchemes",
)


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

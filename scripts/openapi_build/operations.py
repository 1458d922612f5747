"""The paths: one operation per route of `serve_http.ROUTES`, with its error responses in the
shape of the route's `error_body`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import errors
import serve_http

from .common import RULE_VARIABLE, BuildError, Json, camel, openapi_path, renderer_name, schema_ref
from .parameters import ParameterSets
from .values import error_class_by_code

# Every path takes the caller's request id (serve_http's before_request hook reads it) and
# every response carries one.
REQUEST_ID_PARAMETER = {"$ref": "#/components/parameters/RequestId"}
OPERATION_KEYS = ("operationId", "summary", "description", "tags", "security", "parameters")


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
    for variable in RULE_VARIABLE.findall(rule):
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

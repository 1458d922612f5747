"""The detection parameters (`utils_serve.PARAMETERS`) as schemas, property sets and query
parameters, and the `x-parameters` directive that places them."""

from __future__ import annotations

import json
from collections.abc import Mapping

import utils_serve
from detection_types import DetectionParams

from .common import BuildError, Json, camel, number, schema_ref

# The feature field that picks the model (`google.parse_batch` and the form fields).
MODEL_FIELD = "model"


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

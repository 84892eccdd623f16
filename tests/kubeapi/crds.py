"""The Gateway API's HTTPRoute, as an API server with its CRD installed checks it.

The schema is the CRD's openAPIV3Schema (tests/schemas/gateway-api, with its source and licence).
Closed here (`additionalProperties: false` wherever properties are listed): server-side apply
refuses a field the schema does not declare, for custom resources as for core types
("field not declared in schema", see schema.py). ObjectMeta is left to kubernetes-validate.
"""

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate

GROUP = "gateway.networking.k8s.io"
SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "gateway-api" / "httproute-v1.json"
K8S_VERSION = "1.33.0"


def _closed(node):
    if isinstance(node, dict):
        node = {key: _closed(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(item) for item in node]
    return node


@cache
def http_route_schema() -> dict:
    schema = json.loads(SCHEMA.read_text())
    schema["properties"]["metadata"] = {"type": "object"}  # checked by kubernetes-validate instead
    return _closed(schema)


def errors(route: dict) -> list[jsonschema.ValidationError]:
    """Every way ``route`` breaks the HTTPRoute v1 schema (its metadata as ObjectMeta, strict)."""
    validator = jsonschema.Draft7Validator(http_route_schema())
    found = sorted(validator.iter_errors(route), key=lambda e: list(e.absolute_path))
    holder = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": copy.deepcopy(route.get("metadata") or {})}
    try:
        kubernetes_validate.validate(holder, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        found.append(error)  # a jsonschema.ValidationError too
    return found


def validate(route: dict) -> None:
    """Raise the first schema error of ``route`` (a jsonschema.ValidationError)."""
    if found := errors(route):
        raise found[0]

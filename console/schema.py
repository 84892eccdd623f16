"""OpenAPI schema additions (drf-spectacular postprocessing hook): every operation documents
the error responses the API can give, in the one error format console.api writes, so clients
and the property-based tests (tests/test_api_properties.py) can rely on them."""

import functools

ERROR_STATUSES = {
    "400": "Invalid input; `detail` names the field at fault and `fields` lists each problem.",
    "401": "No valid bearer token or session.",
    "403": "Authenticated, but the role does not allow this.",
    "404": "No such object.",
    "409": "Conflicts with the current state (exists already, or changed meanwhile).",
    "413": "The request body is larger than MAX_REQUEST_BODY_BYTES; `limit` says how large it may be.",
    "429": "Too many requests; retry after the time the Retry-After header gives.",
    "503": "An outside system (MLflow, Kubernetes) could not be reached; nothing was changed. Retry shortly.",
}

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "A short code: invalid, not_found, conflict, …"},
        "detail": {"type": "string", "description": "One sentence a person can act on."},
        "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "limit": {"type": "integer"},
    },
    "required": ["error", "detail"],
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in ERROR_STATUSES.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": ref}}}
                )
    return result


@functools.cache
def paged(serializer_class):
    """The schema of a cursor-paginated list of ``serializer_class``: {next, previous, results}."""
    from drf_spectacular.utils import inline_serializer
    from rest_framework import serializers

    name = serializer_class.__name__.removesuffix("Serializer")
    return inline_serializer(
        name=f"Paged{name}List",
        fields={
            "next": serializers.CharField(allow_null=True, help_text="URL of the next page, or null."),
            "previous": serializers.CharField(allow_null=True, help_text="URL of the previous page, or null."),
            "results": serializer_class(many=True),
        },
    )

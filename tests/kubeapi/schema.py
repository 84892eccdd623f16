"""The schema check server-side apply makes before merging: a field the type does not declare
fails the typed conversion.

kube-apiserver's apply handler (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go,
applyPatcher.applyPatchToCurrentObject) returns the field manager's error as is; the field
manager (k8s.io/apimachinery/pkg/util/managedfields/internal/structuredmerge.go, Apply) words it
`failed to create typed patch object (<namespace>/<name>; <group/version>, Kind=<kind>): <errors>`
(objectGVKNN), and structured-merge-diff's ValidationErrors print one `<path>: field not declared
in schema` per unknown field (several under "errors:"). It is not an API status error, so the
handler's ErrorToAPIStatus answers it as a 500 whose Status has no reason. That is what a real
v1.28+ server sends for an SSA patch with an unknown field.

The schemas are kubernetes-validate's (the same the manifest tests use), and for the HTTPRoute
custom resource its CRD's (crds.py); only unknown fields are reported here, not type mismatches.
"""

import copy
import re

import jsonschema
import kubernetes_validate

from . import crds
from . import fields as f
from .status import ApiError

K8S_VERSION = "1.33.0"
_UNEXPECTED = re.compile(r"'([^']+)'")


def _describe(obj: dict, path) -> str:
    """A jsonschema path as structured-merge-diff prints it: list elements by their merge key."""
    steps, node, parent_field = [], obj, None
    for step in path:
        if isinstance(step, int) and isinstance(node, list):
            keys = f.list_keys(parent_field, node)
            steps.append(f.element_key(keys, node[step]) if keys else f"[{step}]")
        else:
            steps.append(step)
            parent_field = step
        node = node[step]
    text = ""
    for step in steps:
        if isinstance(step, f.Key):
            text += f.describe((step,))
        elif step.startswith("["):
            text += step
        else:
            text += f".{step}"
    return text


def unknown_fields(obj: dict) -> list[str]:
    """Paths of fields the object's type does not declare, in the order the schema finds them."""
    probe, found = copy.deepcopy(obj), []
    for _ in range(50):  # each round removes what one error named
        try:
            kubernetes_validate.validate(probe, K8S_VERSION, strict=True)
            return found
        except kubernetes_validate.ValidationError as error:
            if error.validator != "additionalProperties":
                return found  # type mismatches and missing fields are not modelled here
            holder = probe
            for step in error.path:
                holder = holder[step]
            for name in _UNEXPECTED.findall(error.message.split(" (", 1)[1]):
                found.append(f"{_describe(probe, list(error.path))}.{name}")
                holder.pop(name, None)
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError):
            return found
    return found


def crd_unknown_fields(obj: dict) -> list[str]:
    """The same for a custom resource, from its CRD's schema (closed, as apply treats it)."""
    found = []
    validator = jsonschema.Draft7Validator(crds.http_route_schema())
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        if error.validator == "additionalProperties":
            for name in _UNEXPECTED.findall(error.message.split(" (", 1)[1]):
                found.append(f"{_describe(obj, list(error.absolute_path))}.{name}")
    return found


def check_apply(resource, namespace: str, name: str, body: dict) -> None:
    unknown = crd_unknown_fields(body) if resource.crd else unknown_fields(body)
    if not unknown:
        return
    group = resource.group
    errors = (
        unknown[0] + ": field not declared in schema"
        if len(unknown) == 1
        else "\n".join(["errors:"] + [f"  {path}: field not declared in schema" for path in unknown])
    )
    raise ApiError(
        500,
        f"failed to create typed patch object ({namespace}/{name}; {group}/{resource.version}, "
        f"Kind={resource.kind}): {errors}",
        reason="",
    )

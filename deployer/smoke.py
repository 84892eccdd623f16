"""A smoke predict built from a version's serving signature: one row of zeros (or empty
strings) shaped as each input asks. It proves the version answers a well-formed request,
not that its answers are good; the metric gates judge that."""

_STRINGS = {"string", "str", "object", "bytes"}
_BOOLS = {"bool", "boolean"}
_INTS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "long", "integer"}


def _zero(dtype: str | None):
    dtype = (dtype or "float32").lower()
    if dtype in _STRINGS:
        return ""
    if dtype in _BOOLS:
        return False
    if dtype in _INTS:
        return 0
    return 0.0


def _filled(shape: list, value):
    """One instance: the shape without its batch dimension; unknown sizes become 1."""
    if not shape:
        return value
    size = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    return [_filled(shape[1:], value) for _ in range(size)]


def example_request(signature: dict | None) -> dict | None:
    """TF Serving's row format ({"instances": [...]}) for one example, or None without a signature."""
    inputs = (signature or {}).get("inputs") or []
    if not inputs:
        return None

    def instance(spec):
        shape = spec.get("shape")
        # Shapes include the batch dimension (None/-1); a shapeless input is a scalar per row.
        return _filled(list(shape[1:]) if shape else [], _zero(spec.get("dtype")))

    if len(inputs) == 1:
        return {"instances": [instance(inputs[0])]}
    return {"instances": [{spec["name"]: instance(spec) for spec in inputs}]}

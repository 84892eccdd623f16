"""Loading SavedModels and TF Serving's REST predict and metadata formats (util/json_tensor.cc)."""

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from deployer.tfserving_common import _CODE_NAMES, DEFAULT_SIGNATURE, ServingError, _tf

# --- loading SavedModels ---

@dataclass
class Servable:
    """A loaded version: its callable signatures and the SignatureDef protos they came from."""

    path: str
    signature_defs: dict  # name -> tensorflow.core.protobuf.meta_graph_pb2.SignatureDef
    functions: dict  # name -> ConcreteFunction
    handle: object = None  # keeps the loaded object (and its variables) alive


def _read_meta_graph(path: str):
    """The "serve" MetaGraphDef, read from the file itself: TF Serving's metadata endpoint
    prints these protos, and TF's Python loader does not expose them."""
    from google.protobuf import message, text_format  # noqa: PLC0415
    from tensorflow.core.protobuf import saved_model_pb2  # noqa: PLC0415

    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = Path(path, "saved_model.pb"), Path(path, "saved_model.pbtxt")
    try:
        if pb.exists():
            saved_model.ParseFromString(pb.read_bytes())
        elif pbtxt.exists():
            text_format.Parse(pbtxt.read_text(), saved_model)
        else:
            raise ServingError("NOT_FOUND", "Could not find SavedModel .pb or .pbtxt at supplied export "
                                            f"directory path: {path}")
    except (message.DecodeError, text_format.ParseError) as exc:
        raise ServingError("DATA_LOSS", f"Can't parse {pb} as binary proto: {exc}") from exc
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ServingError("NOT_FOUND", f"Could not find meta graph def matching supplied tags: {{ serve }}. "
                                    f"To inspect available tag-sets in the SavedModel, please use the "
                                    f"SavedModel CLI: `saved_model_cli` (path {path})")


def load_savedmodel(path: str) -> Servable:
    meta_graph = _read_meta_graph(path)
    loaded = _tf().saved_model.load(path, tags=["serve"])
    return Servable(path=path, signature_defs=dict(meta_graph.signature_def),
                    functions=dict(loaded.signatures), handle=loaded)


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ServingError):
        return exc.code
    code = getattr(exc, "error_code", None)  # tf.errors.OpError
    return _CODE_NAMES[code] if isinstance(code, int) and 0 <= code < len(_CODE_NAMES) else "UNKNOWN"


def _error_message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)



# --- predict: JSON in, tensors, JSON out (TF Serving's util/json_tensor.cc formats) ---

def _to_array(value, dtype):
    """A JSON value as a numpy array of the signature's dtype; strings may be {"b64": ...}."""
    import numpy as np  # noqa: PLC0415

    if dtype.name == "string":
        return np.asarray(_to_bytes(value), dtype=object)
    try:
        return np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError) as exc:
        raise ServingError("INVALID_ARGUMENT", f"Failed to convert JSON value to {dtype.name}: {exc}") from exc


def _to_bytes(value):
    if isinstance(value, list):
        return [_to_bytes(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode()
    raise ServingError("INVALID_ARGUMENT", f"Expected a string or {{\"b64\": ...}}, got {value!r}.")


def _is_named_row(value) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def _check_names(sent, expected) -> None:
    sent, expected = set(sent), set(expected)
    if sent != expected:
        raise ServingError("INVALID_ARGUMENT", (
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}."))


def _rows_to_columns(instances: list, input_names: list) -> dict:
    """Row format: a list of raw values (single input) or of {input: value} objects."""
    if not isinstance(instances, list) or not instances:
        raise ServingError("INVALID_ARGUMENT", "Expecting 'instances' to be an non-empty list/array")
    if not _is_named_row(instances[0]):
        if len(input_names) != 1:
            raise ServingError("INVALID_ARGUMENT", (
                f"Expecting object but got list at item 0 of input list: the signature has "
                f"{len(input_names)} inputs, so each instance must name them."))
        return {input_names[0]: instances}
    columns = {name: [] for name in instances[0]}
    for index, row in enumerate(instances):
        if not _is_named_row(row) or set(row) != set(columns):
            raise ServingError("INVALID_ARGUMENT", (
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{json.dumps(row)[:200]} keys do not match those of element 0: {sorted(columns)}"))
        for name, value in row.items():
            columns[name].append(value)
    return columns


def _columns(body: dict, input_names: list) -> tuple[str, dict]:
    """("row" or "columnar", {input name: JSON value}) from a predict body."""
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key" if not has_rows else
                           "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
    if has_rows:
        return "row", _rows_to_columns(body["instances"], input_names)
    inputs = body["inputs"]
    if _is_named_row(inputs):
        return "columnar", dict(inputs)
    if len(input_names) != 1:
        raise ServingError("INVALID_ARGUMENT", "'inputs' must be an object naming each of the signature's "
                                               f"inputs: {sorted(input_names)}")
    return "columnar", {input_names[0]: inputs}


def _json_value(array, name: str):
    """A tensor as JSON: float32 as its shortest repr (as TF Serving prints), bytes as text
    or, for outputs named *_bytes, as {"b64": ...}."""
    import numpy as np  # noqa: PLC0415

    if array.dtype == object:
        encode = (lambda b: {"b64": base64.b64encode(b).decode()}) if name.endswith("_bytes") \
            else (lambda b: b.decode("utf-8", errors="replace"))
        return np.vectorize(encode, otypes=[object])(array).tolist() if array.size else array.tolist()
    if array.dtype in (np.float32, np.float16) and array.size:
        # str() of a numpy float32 scalar is its shortest repr; tolist() would widen it first.
        shortest = [float(str(v)) for v in array.ravel()]
        return np.array(shortest, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def _format_outputs(outputs: dict, form: str) -> dict:
    values = {name: tensor.numpy() for name, tensor in outputs.items()}
    if form == "columnar":
        if len(values) == 1:
            ((name, array),) = values.items()
            return {"outputs": _json_value(array, name)}
        return {"outputs": {name: _json_value(array, name) for name, array in values.items()}}
    return {"predictions": _rows(values)}


def _rows(values: dict) -> list:
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in values.items()}
    batch = next(iter(sizes.values()))
    for name, size in sizes.items():
        if size is None or size != batch:
            raise ServingError("INVALID_ARGUMENT", f"Tensor name: {name} has inconsistent batch size: "
                                                   f"{size} expecting: {batch}")
    if len(values) == 1:
        ((name, array),) = values.items()
        return _json_value(array, name)
    columns = {name: _json_value(array, name) for name, array in values.items()}
    return [{name: column[i] for name, column in columns.items()} for i in range(batch)]


def predict(servable: Servable, body: dict) -> dict:
    signature = body.get("signature_name") or DEFAULT_SIGNATURE
    if not isinstance(signature, str) or signature not in servable.functions:
        raise ServingError("INVALID_ARGUMENT", f'Serving signature name: "{signature}" not found in signature def')
    inputs = servable.signature_defs[signature].inputs
    form, columns = _columns(body, list(inputs))
    _check_names(columns, inputs)
    tf = _tf()
    tensors = {name: tf.constant(_to_array(value, tf.dtypes.as_dtype(inputs[name].dtype)))
               for name, value in columns.items()}
    try:
        outputs = servable.functions[signature](**tensors)
    except tf.errors.OpError as exc:
        raise ServingError(_error_code(exc), exc.message) from exc
    except (TypeError, ValueError) as exc:  # shapes or dtypes the signature does not accept
        raise ServingError("INVALID_ARGUMENT", str(exc)) from exc
    return _format_outputs(outputs, form)


def metadata(name: str, version: int, servable: Servable) -> dict:
    """GetModelMetadata as TF Serving prints it: the SignatureDef protos in proto3 JSON with
    proto field names and default values (sizes are strings, dtypes are "DT_FLOAT")."""
    from google.protobuf import json_format  # noqa: PLC0415

    defs = {key: json_format.MessageToDict(value, preserving_proto_field_name=True,
                                           always_print_fields_with_no_presence=True)
            for key, value in servable.signature_defs.items()}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": defs}}}



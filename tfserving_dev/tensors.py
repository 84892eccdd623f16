"""Loading SavedModels and TF Serving's REST predict and metadata formats (util/json_tensor.cc)."""

import base64
import binascii
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from deployer.tfserving import DEFAULT_SIGNATURE
from tfserving_dev.errors import CODE_NAMES, ServingError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_IMPORT_LOCK = threading.Lock()


def _tf():
    # Heavy: only a server that loads models pays for it. Two threads importing TensorFlow at
    # once (pods of the test API server load models in threads) can hand one of them a
    # half-initialised module, since TF's imports have cycles and Python breaks a cross-thread
    # import deadlock that way; so the first import happens under one lock.
    with _IMPORT_LOCK:
        import tensorflow as tf  # noqa: PLC0415

    return tf


def import_tensorflow() -> None:
    """Import TensorFlow now (seconds), so that a first load later is as quick as the others."""
    _tf()


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
    _tf()  # TensorFlow whole, under the import lock, before one of its modules
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
            raise ServingError(
                "NOT_FOUND", f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
            )
    except (message.DecodeError, text_format.ParseError) as exc:
        raise ServingError("DATA_LOSS", f"Can't parse {pb} as binary proto: {exc}") from exc
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ServingError(
        "NOT_FOUND",
        f"Could not find meta graph def matching supplied tags: {{ serve }}. "
        f"To inspect available tag-sets in the SavedModel, please use the "
        f"SavedModel CLI: `saved_model_cli` (path {path})",
    )


def load_savedmodel(path: str) -> Servable:
    meta_graph = _read_meta_graph(path)
    loaded = _tf().saved_model.load(path, tags=["serve"])
    return Servable(
        path=path, signature_defs=dict(meta_graph.signature_def), functions=dict(loaded.signatures), handle=loaded
    )


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ServingError):
        return exc.code
    code = getattr(exc, "error_code", None)  # tf.errors.OpError
    return CODE_NAMES[code] if isinstance(code, int) and 0 <= code < len(CODE_NAMES) else "UNKNOWN"


def _error_message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


# --- predict, classify and regress: JSON in, tensors, JSON out ---
#
# A port of TF Serving's util/json_tensor.cc (FillPredictRequestFromJson, MakeJsonFromTensors,
# FillClassificationRequestFromJson, ...) and servables/tensorflow/{predict_util,classifier,
# regressor}.cc: the same checks in the same order, with the same error texts, because clients
# (and Modelgate's smoke predict) are written against those texts.

PREDICT, CLASSIFY, REGRESS = "tensorflow/serving/predict", "tensorflow/serving/classify", "tensorflow/serving/regress"
_INT32, _INT64, _UINT32, _UINT64 = (2**31, 2**63, 2**32, 2**64)
_FLOAT_MAX_INT, _DOUBLE_MAX_INT = 2**24 - 1, 2**53 - 1
_FLOAT32_MAX = 3.4028234663852886e38
# DataTypeString() names, keyed by tf.dtypes.DType.name.
_DTYPE_NAMES = {
    "float32": "float",
    "float64": "double",
    "int32": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "string": "string",
    "int64": "int64",
    "bool": "bool",
    "uint32": "uint32",
    "uint64": "uint64",
    "float16": "half",
    "bfloat16": "bfloat16",
    "complex64": "complex64",
    "complex128": "complex128",
}


class _Raw(str):
    """A number already spelled as TF Serving spells it (NaN and Infinity included)."""


def parse_json(body: bytes) -> dict:
    """ParseJson(): the request body as a JSON object (NaN and Infinity allowed, as rapidjson's
    kParseNanAndInfFlag does)."""
    if not body:
        raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ServingError(
            "INVALID_ARGUMENT", f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: Invalid value. at offset: {exc.pos}") from exc
    except RecursionError as exc:  # rapidjson would overflow its stack; answer, do not crash
        raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is nested too deeply") from exc
    if not isinstance(doc, dict):
        raise _format_error(doc, "Is not object")
    return doc


def _json_type(val) -> str:
    """JsonTypeString()."""
    if val is None:
        return "Null"
    if val is True:
        return "True"
    if val is False:
        return "False"
    names: dict[type, str] = {dict: "Object", list: "Array", str: "String"}
    return names.get(type(val), "Number")


def _is_number(val) -> bool:
    return type(val) in (int, float)


def _as_double(val) -> bool:
    """rapidjson stores integers beyond uint64/int64 as doubles."""
    return type(val) is float or (type(val) is int and not -_INT64 <= val < _UINT64)


def _is_int(val) -> bool:
    return type(val) is int and -_INT32 <= val < _INT32


def _is_int64(val) -> bool:
    return type(val) is int and -_INT64 <= val < _INT64


def _is_uint64(val) -> bool:
    return type(val) is int and 0 <= val < _UINT64


def _to_text(val) -> str:
    """JsonValueToString(), for error messages."""
    if type(val) is float:
        return _decimal(val, 17)
    if isinstance(val, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_to_text(v)}" for k, v in val.items()) + "}"
    if isinstance(val, list):
        return "[" + ",".join(_to_text(v) for v in val) + "]"
    return json.dumps(val)


def _format_error(val, *parts) -> ServingError:
    return ServingError("INVALID_ARGUMENT", f"JSON Value: {_to_text(val)} " + "".join(str(p) for p in parts))


def _type_error(val, dtype: str) -> ServingError:
    return ServingError(
        "INVALID_ARGUMENT", f"JSON Value: {_to_text(val)} Type: {_json_type(val)} is not of expected type: {dtype}"
    )


def _lossless(val, max_int: int, max_value: float) -> bool:
    """IsLosslessDecimal(): integers must fit the mantissa, decimals the range."""
    as_float = float(val) if not (type(val) is int and abs(val) > 1e308) else math.inf
    if not math.isfinite(as_float):
        return True
    if type(val) is int and -_INT64 <= val < _UINT64:
        return abs(val) <= max_int
    return -max_value <= as_float <= max_value


def _lossy_error(val, target: str) -> ServingError:
    return ServingError(
        "INVALID_ARGUMENT", f"Cannot convert JSON value: {_to_text(val)} to {target} without loss of precision."
    )


def _scalar(val, dtype: str):
    """AddValueToTensor(): one JSON leaf as a value of the tensor's dtype, strictly typed."""
    if dtype in ("float", "double"):
        if not _is_number(val):
            raise _type_error(val, dtype)
        if dtype == "float" and not _lossless(val, _FLOAT_MAX_INT, _FLOAT32_MAX):
            raise _lossy_error(val, "float")
        if dtype == "double" and not _lossless(val, _DOUBLE_MAX_INT, sys.float_info.max):
            raise _lossy_error(val, "double")
        return float(val)
    checks = {
        "int32": _is_int,
        "int16": _is_int,
        "int8": _is_int,
        "uint8": _is_int,
        "int64": _is_int64,
        "uint32": lambda v: type(v) is int and 0 <= v < _UINT32,
        "uint64": _is_uint64,
        "bool": lambda v: type(v) is bool,
        "string": lambda v: type(v) is str,
    }
    if dtype not in checks:
        raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {_to_text(val)} to type: {dtype}")
    if not checks[dtype](val):
        raise _type_error(val, dtype)
    return val.encode() if dtype == "string" else val


def _is_b64(val) -> bool:
    return isinstance(val, dict) and len(val) == 1 and isinstance(val.get("b64"), str)


def _b64_decode(val) -> bytes:
    """JsonDecodeBase64Object(): {"b64": "..."} with absl's Base64Unescape (padding optional)."""
    if not _is_b64(val):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {_to_text(val)} not formatted correctly for base64 data")
    text = val["b64"].strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServingError("INVALID_ARGUMENT", "Unable to base64 decode") from exc


def _dense_shape(val) -> list[int]:
    """GetDenseTensorShape(): the shape read off the first element at each level."""
    shape = []
    while isinstance(val, list):
        shape.append(len(val))
        if not val:
            break
        val = val[0]
    return shape


def _fill(val, level: int, dtype: str, shape: list, out: list) -> None:
    """FillTensorProto(): every leaf at the same depth, every list of the expected size."""
    rank = len(shape)
    if not isinstance(val, list):
        if level != rank:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"JSON Value: {_to_text(val)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}",
            )
        if isinstance(val, dict):
            if dtype != "string":
                raise _type_error(val, dtype)
            out.append(_b64_decode(val))
        else:
            out.append(_scalar(val, dtype))
        return
    if level >= rank:
        raise ServingError("INVALID_ARGUMENT", f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(val) != shape[level]:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Encountered list at unexpected size: {len(val)} at level: {level} expected size: {shape[level]}",
        )
    for item in val:
        _fill(item, level + 1, dtype, shape, out)


@dataclass
class _Tensor:
    dtype: str
    shape: list
    values: list


def _tensor(val, dtype: str) -> _Tensor:
    shape, values = _dense_shape(val), list[object]()
    _fill(val, 0, dtype, shape, values)
    return _Tensor(dtype, shape, values)


def _shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _status_text(exc: ServingError) -> str:
    return f"{exc.code}: {exc.message}"


def _tensors_from_instances(instances: list, infomap: dict) -> dict:
    """FillTensorMapFromInstancesList(): rows batched along a new first dimension."""
    if not isinstance(instances[0], dict) and len(infomap) > 1:
        raise ServingError(
            "INVALID_ARGUMENT",
            "instances is a plain list, but expecting list of objects as "
            "multiple input tensors required as per tensorinfo_map",
        )

    def is_object(val) -> bool:
        return isinstance(val, dict) and not _is_b64(val)

    objects = is_object(instances[0])
    names = sorted(infomap)
    items: dict[str, list] = {}
    shapes: dict[str, tuple] = {}

    def add(item, name: str) -> None:
        if name not in infomap:
            raise ServingError("INVALID_ARGUMENT", f"JSON object: does not have named input: {name}")
        tensor = _tensor(item, infomap[name])
        size = len(tensor.values)
        if name in shapes:
            if shapes[name][0] != size:
                raise ServingError("INVALID_ARGUMENT", f"Expecting tensor size: {shapes[name][0]} but got: {size}")
            if shapes[name][1] != tensor.shape:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expecting shape {_shape_text(shapes[name][1])} but got: {_shape_text(tensor.shape)}",
                )
        else:
            shapes[name] = (size, tensor.shape)
        items.setdefault(name, []).extend(tensor.values)

    for count, elem in enumerate(instances):
        if objects:
            if not is_object(elem):
                raise ServingError("INVALID_ARGUMENT", f"Expecting object but got list at item {count} of input list")
            for name, value in elem.items():
                try:
                    add(value, name)
                except ServingError as exc:
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"Failed to process element: {count} key: {name} of "
                        f"'instances' list. Error: {_status_text(exc)}",
                    ) from exc
            if set(elem) != set(names):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Failed to process element: {count} of 'instances' list. "
                    f"JSON object: {_to_text(elem)} must only have keys: "
                    f"{','.join(names)}",
                )
        else:
            if is_object(elem):
                raise ServingError(
                    "INVALID_ARGUMENT", f"Expecting value/list but got object at item {count} of input list"
                )
            try:
                add(elem, names[0])
            except ServingError as exc:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Failed to process element: {count} of 'instances' list. Error: {_status_text(exc)}",
                ) from exc
    return {name: _Tensor(infomap[name], [len(instances), *shapes[name][1]], values) for name, values in items.items()}


def _tensors_from_inputs(val, infomap: dict) -> dict:
    """FillTensorMapFromInputsMap(): one value per input; keys the signature lacks are ignored."""
    if not isinstance(val, dict) or _is_b64(val):
        if len(infomap) > 1:
            raise ServingError(
                "INVALID_ARGUMENT",
                "inputs is a plain value/list, but expecting an object as "
                "multiple input tensors required as per tensorinfo_map",
            )
        ((name, dtype),) = infomap.items()
        return {name: _tensor(val, dtype)}
    tensors = {}
    for name in sorted(infomap):
        if name not in val:
            raise ServingError("INVALID_ARGUMENT", f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _tensor(val[name], infomap[name])
    return tensors


def signature_name(doc: dict) -> str:
    """FillSignature(): the optional signature_name, which must be a string when present."""
    if "signature_name" not in doc:
        return ""
    if not isinstance(doc["signature_name"], str):
        raise _format_error(doc, "not formatted correctly. 'signature_name' key must be a string value.")
    return doc["signature_name"]


def fill_predict_request(doc: dict, infomap: dict) -> tuple[str, dict]:
    """("row" or "columnar", {input: _Tensor}) from a parsed predict body; infomap maps the
    signature's inputs to their dtype names ("float", "int32", "string", ...)."""
    if not infomap:
        raise ServingError(
            "INVALID_ARGUMENT", f"Failed to get input map for signature: {signature_name(doc) or 'DEFAULT'}"
        )
    if "instances" in doc:
        if "inputs" in doc:
            raise _format_error(
                doc, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
            )
        if not isinstance(doc["instances"], list):
            raise _format_error(doc, "Excepting 'instances' to be an list/array")
        if not doc["instances"]:
            raise _format_error(doc, "No values in 'instances' array")
        return "row", _tensors_from_instances(doc["instances"], infomap)
    if "inputs" in doc:
        return "columnar", _tensors_from_inputs(doc["inputs"], infomap)
    raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")


# -- output: MakeJsonFromTensors and WriteDecimal --


def _decimal(val: float, max_digits: int) -> str:
    """WriteDecimal(): six significant digits (absl::StrCat) when they round-trip, else
    max_digits10 (9 for float, 17 for double); whole numbers get ".0"."""
    import numpy as np  # noqa: PLC0415

    if math.isnan(val):
        return "NaN"
    if math.isinf(val):
        return "-Infinity" if val < 0 else "Infinity"
    kind = np.float32 if max_digits == 9 else np.float64
    text = f"{val:g}"
    if kind(float(text)) != kind(val):
        text = f"{val:.{max_digits}g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _leaf(value, dtype: str, as_bytes: bool):
    if dtype == "float":
        return _Raw(_decimal(float(value), 9))
    if dtype == "double":
        return _Raw(_decimal(float(value), 17))
    if dtype == "string":
        return {"b64": base64.b64encode(value).decode()} if as_bytes else value.decode("utf-8", "replace")
    if dtype == "bool":
        return bool(value)
    return int(value)


_WRITABLE = {"float", "double", "int32", "int16", "int8", "uint8", "string", "int64", "bool", "uint32", "uint64"}


def _nested(array, dtype: str, as_bytes: bool, first_dim: int = 0):
    """AddTensorValues(): nested lists from the given dimension on; a scalar stays a scalar."""
    if dtype not in _WRITABLE:
        raise ServingError("INVALID_ARGUMENT", f"Failed to write JSON value for tensor type: {dtype}")
    if array.ndim == first_dim:
        return _leaf(array[()] if array.ndim == 0 else array, dtype, as_bytes)

    def walk(a):
        if a.ndim == 0:
            return _leaf(a[()], dtype, as_bytes)
        return [walk(a[i]) if a.ndim > 1 else _leaf(a[i], dtype, as_bytes) for i in range(a.shape[0])]

    return walk(array)


def _dtype_name(array) -> str:
    return (
        "string"
        if array.dtype == object or array.dtype.kind in "SU"
        else _DTYPE_NAMES.get(array.dtype.name, array.dtype.name)
    )


def make_json_from_tensors(outputs: dict, form: str) -> dict:
    """MakeJsonFromTensors(): {"predictions": rows} or {"outputs": columns}; string outputs
    whose name ends in _bytes are written as {"b64": ...}."""
    if not outputs:
        raise ServingError("INVALID_ARGUMENT", "Cannot convert empty tensor map to JSON")
    import numpy as np  # noqa: PLC0415

    names = sorted(outputs)
    if form == "columnar":
        columns = {n: _nested(outputs[n], _dtype_name(outputs[n]), _is_bytes(n, outputs[n])) for n in names}
        return {"outputs": columns[names[0]] if len(names) == 1 else columns}
    batch = 0
    for name in names:
        array = outputs[name]
        if array.ndim == 0:
            raise ServingError("INVALID_ARGUMENT", f"Tensor name: {name} has no shape information ")
        if array.shape[0] < 1:
            raise ServingError("INVALID_ARGUMENT", f"Tensor name: {name} has invalid batch size: {array.shape[0]}")
        if batch and batch != array.shape[0]:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: {batch}",
            )
        batch = array.shape[0]
    rows = []
    for i in range(batch):
        row = {
            n: _nested(
                np.asarray(outputs[n][i], dtype=outputs[n].dtype), _dtype_name(outputs[n]), _is_bytes(n, outputs[n])
            )
            for n in names
        }
        rows.append(row[names[0]] if len(names) == 1 else row)
    return {"predictions": rows}


def _is_bytes(name: str, array) -> bool:
    return _dtype_name(array) == "string" and name.endswith("_bytes")


def dumps(payload) -> bytes:
    """JSON text in which _Raw numbers appear as written (NaN and Infinity too, as TF Serving
    writes them)."""

    def write(val) -> str:
        if isinstance(val, _Raw):
            return str(val)
        if isinstance(val, dict):
            return "{\n" + ",\n".join(f"{json.dumps(k)}: {write(v)}" for k, v in val.items()) + "\n}"
        if isinstance(val, list):
            return "[" + ", ".join(write(v) for v in val) + "]"
        return json.dumps(val)

    return write(payload).encode()


# -- predict --


def _signature(servable: Servable, name: str):
    key = name or DEFAULT_SIGNATURE
    if key not in servable.signature_defs or key not in servable.functions:
        raise ServingError("INVALID_ARGUMENT", f'Serving signature name: "{key}" not found in signature def')
    return key, servable.signature_defs[key]


def input_dtypes(servable: Servable, name: str) -> dict:
    """GetInfoMap(): the signature's inputs and their dtype names."""
    from tensorflow.core.framework import types_pb2  # noqa: PLC0415

    _, sig = _signature(servable, name)
    return {
        alias: _DTYPE_NAMES.get(_tf().dtypes.as_dtype(info.dtype).name, types_pb2.DataType.Name(info.dtype)[3:].lower())
        for alias, info in sig.inputs.items()
    }


def _run(servable: Servable, key: str, feeds: dict, api: str, on_runtime):
    tf = _tf()
    started = time.perf_counter()
    try:
        outputs = servable.functions[key](**feeds)
    except tf.errors.OpError as exc:
        raise ServingError(_error_code(exc), exc.message) from exc
    except (TypeError, ValueError) as exc:  # shapes or dtypes the signature does not accept
        raise ServingError("INVALID_ARGUMENT", str(exc)) from exc
    if on_runtime:
        on_runtime(api, (time.perf_counter() - started) * 1e6)
    import numpy as np  # noqa: PLC0415

    return {name: np.asarray(tensor.numpy()) for name, tensor in outputs.items()}


def _as_numpy(tensor: _Tensor):
    import numpy as np  # noqa: PLC0415

    numpy_types = {
        "float": np.float32,
        "double": np.float64,
        "int32": np.int32,
        "int16": np.int16,
        "int8": np.int8,
        "uint8": np.uint8,
        "int64": np.int64,
        "bool": np.bool_,
        "uint32": np.uint32,
        "uint64": np.uint64,
        "string": object,
    }
    if tensor.dtype not in numpy_types:
        raise ServingError("INVALID_ARGUMENT", f"tensor parsing error: unsupported dtype {tensor.dtype}")
    return np.array(tensor.values, dtype=numpy_types[tensor.dtype]).reshape(tensor.shape)


def predict(servable: Servable, doc: dict, *, on_runtime=None) -> dict:
    """RunPredict() on a parsed body whose signature_name was already read."""
    key, sig = _signature(servable, signature_name(doc))
    form, tensors = fill_predict_request(doc, input_dtypes(servable, key))
    if sig.method_name not in (PREDICT, CLASSIFY, REGRESS):
        raise ServingError(
            "INTERNAL",
            f"Expected prediction signature method_name to be one of {{{PREDICT}, "
            f"{CLASSIFY}, {REGRESS}}}. Was: {sig.method_name}",
        )
    tf = _tf()
    feeds = {name: tf.constant(_as_numpy(t)) for name, t in tensors.items()}
    return make_json_from_tensors(_run(servable, key, feeds, "Predict", on_runtime), form)


# -- classify and regress: tf.Example in JSON --


def _feature_error(name: str, val) -> ServingError:
    return ServingError("INVALID_ARGUMENT", f"Feature: {name} has element with unexpected JSON type: {_json_type(val)}")


def _add_to_feature(val, name: str, feature: dict) -> None:
    """AddValueToFeature(): a feature holds one kind; ints and booleans are int64."""

    def want(kind: str) -> None:
        if feature["kind"] not in (None, kind):
            raise ServingError(
                "INVALID_ARGUMENT", f"Unexpected element type in feature: {name} expecting type: {feature['kind']}"
            )
        feature["kind"] = kind

    if val is None or isinstance(val, list):
        raise _feature_error(name, val)
    if type(val) is bool:
        want("int64")
        feature["values"].append(int(val))
    elif isinstance(val, dict):
        if not _is_b64(val):
            raise _feature_error(name, val)
        want("bytes")
        feature["values"].append(_b64_decode(val))
    elif isinstance(val, str):
        want("bytes")
        feature["values"].append(val.encode())
    elif _as_double(val):
        want("float")
        if not _lossless(val, _FLOAT_MAX_INT, _FLOAT32_MAX):
            raise _lossy_error(val, "float")
        feature["values"].append(float(val))
    else:
        want("int64")
        if not _is_int64(val):
            raise ServingError("INVALID_ARGUMENT", f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature["values"].append(val)


def _example(val) -> bytes:
    """MakeExampleFromJsonObject(): a JSON object as a serialized tf.train.Example."""
    from tensorflow.core.example import example_pb2  # noqa: PLC0415

    if not isinstance(val, dict):
        raise ServingError("INVALID_ARGUMENT", f"Example must be JSON object but got JSON {_json_type(val)}")
    example = example_pb2.Example()
    for name, content in val.items():
        feature: dict[str, object] = {"kind": None, "values": []}
        for item in content if isinstance(content, list) else [content]:
            _add_to_feature(item, name, feature)
        target = example.features.feature[name]
        if feature["kind"] == "int64":
            target.int64_list.value.extend(feature["values"])
        elif feature["kind"] == "float":
            target.float_list.value.extend(feature["values"])
        elif feature["kind"] == "bytes":
            target.bytes_list.value.extend(feature["values"])
    return example.SerializeToString()


def fill_examples(doc: dict) -> list[bytes]:
    """FillClassifyRegressRequestFromJson(): the serialized Examples, each prefixed with the
    serialized context (concatenated protos merge, as ExampleListWithContext does)."""
    signature_name(doc)
    context = _example(doc["context"]) if "context" in doc else b""
    if "examples" not in doc:
        raise _format_error(doc, "When method is classify, key 'examples' is expected and was not found")
    if not isinstance(doc["examples"], list):
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not doc["examples"]:
        raise _format_error(doc, "'examples' value is an empty array")
    return [context + _example(item) for item in doc["examples"]]


def _example_signature(servable: Servable, doc: dict, method: str, what: str):
    key = signature_name(doc) or DEFAULT_SIGNATURE
    if key not in servable.signature_defs or key not in servable.functions:
        raise ServingError("INVALID_ARGUMENT", f"No signature was found with the name: {key}")
    sig = servable.signature_defs[key]
    if sig.method_name != method:
        raise ServingError(
            "INVALID_ARGUMENT", f"Expected {what} signature method_name to be {method}. Was: {sig.method_name}"
        )
    if len(sig.inputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
    if "inputs" not in sig.inputs:
        raise ServingError("FAILED_PRECONDITION", f"No {what} inputs found in SignatureDef: {sig}")
    return key, sig


def classify(servable: Servable, examples: list, doc: dict, *, on_runtime=None) -> dict:
    """RunClassify(): [[label, score], ...] per example."""
    key, sig = _example_signature(servable, doc, CLASSIFY, "classification")
    if len(sig.outputs) not in (1, 2):
        raise ServingError("INVALID_ARGUMENT", f"Expected one or two output Tensors, found {len(sig.outputs)}")
    if "classes" not in sig.outputs and "scores" not in sig.outputs:
        raise ServingError(
            "FAILED_PRECONDITION",
            "Expected classification signature outputs to contain at least "
            f'one of "classes" or "scores". Signature was: {sig}',
        )
    outputs = _run(servable, key, {"inputs": _tf().constant(examples)}, "Classify", on_runtime)
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for label, tensor, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(tensor.shape)}",
            )
        if _dtype_name(tensor) != ("string" if label == "classes" else "float"):
            raise ServingError("INVALID_ARGUMENT", f"Expected {label} Tensor of {dtype}. Got: {tensor.dtype}")
        if tensor.shape[0] != len(examples):
            raise ServingError(
                "INVALID_ARGUMENT", f"Expected {label} output batch size of {len(examples)}. Got: {tensor.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}",
        )
    width = (classes if classes is not None else scores).shape[1]
    results = [
        [
            [
                classes[i][c].decode("utf-8", "replace") if classes is not None else "",
                _Raw(_decimal(float(scores[i][c]) if scores is not None else 0.0, 9)),
            ]
            for c in range(width)
        ]
        for i in range(len(examples))
    ]
    if not results:
        raise ServingError("INVALID_ARGUMENT", "Cannot convert empty ClassificationResults to JSON")
    return {"results": results}


def regress(servable: Servable, examples: list, doc: dict, *, on_runtime=None) -> dict:
    """RunRegress(): one float per example."""
    key, sig = _example_signature(servable, doc, REGRESS, "regression")
    if len(sig.outputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one output Tensor.")
    if "outputs" not in sig.outputs:
        raise ServingError("FAILED_PRECONDITION", f"No regression outputs found in SignatureDef: {sig}")
    values = _run(servable, key, {"inputs": _tf().constant(examples)}, "Regress", on_runtime)["outputs"]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise ServingError(
            "INVALID_ARGUMENT",
            "Expected output Tensor shape to be either [batch_size] or "
            f"[batch_size, 1] but got {_shape_text(values.shape)}",
        )
    if values.shape[0] != len(examples):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Input batch size did not match output batch size: {len(examples)} vs. {values.shape[0]}",
        )
    if _dtype_name(values) != "float":
        raise ServingError("INVALID_ARGUMENT", f"Expected output Tensor of DT_FLOAT.  Got: {values.dtype}")
    return {"results": [_Raw(_decimal(float(v), 9)) for v in values.reshape(-1)]}


def metadata(name: str, version: int, servable: Servable) -> dict:
    """GetModelMetadata as TF Serving prints it: the SignatureDef protos in proto3 JSON with
    proto field names and default values (sizes are strings, dtypes are "DT_FLOAT")."""
    from google.protobuf import json_format  # noqa: PLC0415

    defs = {
        key: json_format.MessageToDict(
            value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for key, value in servable.signature_defs.items()
    }
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": defs}},
    }

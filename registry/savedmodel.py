"""Where a version's SavedModel lives, and its signature: pure functions of the MLmodel
file and the artifact listing, so they are easy to table-test.

TF Serving can serve a version only if a SavedModel directory (saved_model.pb plus
variables/) is among its artifacts. Which subdirectory depends on the flavor:

- ``tensorflow`` flavor, ``tf2-module`` or ``tf1-estimator``: ``saved_model_dir``;
- ``tensorflow`` flavor, ``keras`` model type saved with ``save_format: tf``: ``data/model``;
- ``keras`` flavor saved with ``save_exported_model: true``: ``data/model``;
- no MLmodel at all but a ``saved_model.pb`` at the root: a raw SavedModel directory;
- ``savedmodel/`` beside the MLmodel: a SavedModel Modelgate converted from a Keras 3 archive.

With Keras 3 (TensorFlow >= 2.16), ``mlflow.tensorflow.log_model(keras_model)`` records
``save_format: tf`` but writes ``data/model.keras``, a Keras 3 archive TF Serving cannot
load; ``mlflow.keras.log_model`` does the same unless ``save_exported_model=True``.
"""

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Inspection:
    flavors: list[str] = field(default_factory=list)
    signature: dict | None = None
    savedmodel_path: str = ""
    servable: bool = False
    note: str = ""
    keras_archive: str = ""  # a Keras 3 .keras file among the artifacts, relative to them


# Where a SavedModel converted from a version's Keras 3 archive is logged, beside the original.
CONVERTED_DIR = "savedmodel"
LOG_A_SAVEDMODEL = (
    'Log a SavedModel instead: mlflow.keras.log_model(model, name="model", '
    "save_exported_model=True, signature=signature), or model.export(dir) and "
    'mlflow.log_artifacts(dir, "model") (docs/api-for-ci.md).'
)


def keras_archive_candidate(flavors: dict) -> str | None:
    """Where a Keras 3 .keras archive would be, if the flavor saved one."""
    tf_conf = flavors.get("tensorflow")
    if tf_conf is not None and tf_conf.get("model_type") == "keras" and tf_conf.get("save_format", "tf") != "h5":
        return tf_conf.get("data", "data") + "/model.keras"
    keras_conf = flavors.get("keras")
    if keras_conf is not None and not keras_conf.get("save_exported_model"):
        return keras_conf.get("data", "data") + "/model.keras"
    return None


def keras_archive_note(path: str) -> str:
    return (
        f"Holds a Keras 3 .keras archive at {path}, not a SavedModel: TF Serving cannot load it "
        f"(it needs saved_model.pb with variables/). {LOG_A_SAVEDMODEL}"
    )


def savedmodel_candidate(flavors: dict) -> tuple[str | None, str]:
    """(subdirectory that should hold saved_model.pb, or None; why not)."""
    tf_conf = flavors.get("tensorflow")
    if tf_conf is not None:
        model_type = tf_conf.get("model_type")
        if model_type in ("tf2-module", "tf1-estimator") or (model_type is None and "saved_model_dir" in tf_conf):
            return tf_conf.get("saved_model_dir", "tf2model"), ""
        if model_type == "keras":
            if tf_conf.get("save_format") == "tf":
                return tf_conf.get("data", "data") + "/model", ""
            return None, (
                f"Keras model saved as {tf_conf.get('save_format', 'h5')!r}, not a SavedModel. "
                "Log it with mlflow.keras.log_model(..., save_exported_model=True)."
            )
        return None, f"Unknown tensorflow model_type {model_type!r}."
    keras_conf = flavors.get("keras")
    if keras_conf is not None:
        if keras_conf.get("save_exported_model"):
            return keras_conf.get("data", "data") + "/model", ""
        return None, keras_archive_note(keras_conf.get("data", "data") + "/model.keras")
    names = ", ".join(sorted(f for f in flavors if f != "python_function")) or "none"
    return None, f"No TensorFlow or Keras flavor (flavors: {names}); TF Serving needs a SavedModel."


def _spec_from_mlflow(item: dict) -> dict:
    if item.get("type") == "tensor":
        spec = item.get("tensor-spec", {})
        return {"name": item.get("name"), "dtype": spec.get("dtype"), "shape": spec.get("shape")}
    return {"name": item.get("name"), "dtype": item.get("type"), "shape": None}


def signature_from_mlmodel(signature: dict | None) -> dict | None:
    """MLmodel's signature ({"inputs": "<json>", "outputs": "<json>"}) as plain lists."""
    if not signature or not signature.get("inputs"):
        return None

    def parse(value):
        items = json.loads(value) if isinstance(value, str) else (value or [])
        return [_spec_from_mlflow(item) for item in items]

    return {
        "inputs": parse(signature.get("inputs")),
        "outputs": parse(signature.get("outputs")),
        "method": "predict",
        "origin": "MLmodel",
    }


def signature_from_savedmodel_proto(saved_model_pb: bytes) -> dict | None:
    """The serving_default signature of a saved_model.pb: the names TF Serving's REST API uses.

    Imports TensorFlow's protobuf classes, so only called when the MLmodel file has
    no signature (a raw SavedModel, or a model logged without one).
    """
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import dtypes

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(saved_model_pb)
    for meta_graph in proto.meta_graphs:
        sig = meta_graph.signature_def.get("serving_default")
        if sig is None:
            continue

        def specs(tensors):
            out = []
            for key in sorted(tensors):
                info = tensors[key]
                shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
                out.append({"name": key, "dtype": dtypes.as_dtype(info.dtype).name, "shape": shape})
            return out

        method = sig.method_name.rsplit("/", 1)[-1] or "predict"
        return {"inputs": specs(sig.inputs), "outputs": specs(sig.outputs), "method": method, "origin": "SavedModel"}
    return None

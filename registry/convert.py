"""Converting a Keras 3 ``.keras`` archive to a SavedModel TF Serving can load.

Runs in the worker (registry.convert_keras_version), which needs TensorFlow and Keras:
``keras.saving.load_model`` reads the archive, ``Model.export`` writes a SavedModel whose
first endpoint is also ``serving_default``, the signature TF Serving answers by default.
"""

import importlib.util


class ConversionError(Exception):
    """The archive could not be converted; the message says why (shown on the version)."""


def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None


def keras_archive_to_savedmodel(archive: str, out_dir: str) -> str:
    if not tensorflow_available():
        raise ConversionError("This worker has no TensorFlow/Keras, which converting a Keras 3 archive needs.")
    import keras  # noqa: PLC0415 - heavy, and only a converting worker needs it

    try:
        model = keras.saving.load_model(archive, compile=False)
    except Exception as exc:  # a damaged or foreign archive: say what Keras said
        raise ConversionError(f"Keras could not load {archive.rsplit('/', 1)[-1]}: {exc}") from exc
    try:
        model.export(out_dir, format="tf_saved_model", verbose=False)
    except Exception as exc:
        raise ConversionError(f"Keras could not export a SavedModel: {exc}") from exc
    return out_dir

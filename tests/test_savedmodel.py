import json

import pytest

from registry.savedmodel import savedmodel_candidate, signature_from_mlmodel


@pytest.mark.parametrize(
    "flavors, subdir, why",
    [
        ({"tensorflow": {"model_type": "tf2-module", "saved_model_dir": "tf2model"}}, "tf2model", ""),
        ({"tensorflow": {"model_type": "tf1-estimator", "saved_model_dir": "tfmodel"}}, "tfmodel", ""),
        ({"tensorflow": {"model_type": "keras", "save_format": "tf", "data": "data"}}, "data/model", ""),
        ({"tensorflow": {"model_type": "keras", "save_format": "h5", "data": "data"}}, None, "not a SavedModel"),
        ({"keras": {"save_exported_model": True, "data": "data"}}, "data/model", ""),
        ({"keras": {"save_exported_model": False, "data": "data"}}, None, "save_exported_model=True"),
        ({"sklearn": {}, "python_function": {}}, None, "flavors: sklearn"),
    ],
)
def test_where_the_savedmodel_should_be(flavors, subdir, why):
    found, reason = savedmodel_candidate(flavors)
    assert found == subdir
    assert why in reason


def test_tensor_signature_is_read_from_mlmodel():
    signature = {
        "inputs": json.dumps(
            [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}, "name": "features"}]
        ),
        "outputs": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]),
    }
    parsed = signature_from_mlmodel(signature)
    assert parsed["inputs"] == [{"name": "features", "dtype": "float32", "shape": [-1, 4]}]
    assert parsed["outputs"][0]["shape"] == [-1, 3]


def test_column_signature_has_no_shape():
    parsed = signature_from_mlmodel({"inputs": json.dumps([{"type": "double", "name": "x"}]), "outputs": None})
    assert parsed["inputs"] == [{"name": "x", "dtype": "double", "shape": None}]


def test_missing_signature_is_none():
    assert signature_from_mlmodel(None) is None
    assert signature_from_mlmodel({"inputs": None}) is None

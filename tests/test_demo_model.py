"""The demo model answers the README's example as the README says: it is trained on iris-like
flowers (drawn from the real per-class means and standard deviations), so the textbook setosa
is class 0 in the usual iris class order."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from registry.demo_training import IRIS_CLASSES, build_module, fit, iris_like

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> list[list[float]]:
    found = re.search(r"curl -d '(\{\"instances\".*?\})' ", README.read_text())
    assert found, "the README's predict example"
    return json.loads(found.group(1))["instances"]


@pytest.mark.parametrize("seed", [1, 2])  # demo.seed_model's versions 1 and 2
def test_the_demo_model_answers_the_readme_example_as_documented(seed):
    import tensorflow as tf

    [row] = _readme_example()
    assert row == [5.1, 3.5, 1.4, 0.2]  # the README documents this flower's answer
    assert "class 0 (setosa), with a\nprobability above 0.9" in README.read_text()

    module = build_module(seed)  # held: its tf.function keeps only a weak reference to it
    [probabilities] = module.serve(tf.constant([row], tf.float32))["probabilities"].numpy()

    assert IRIS_CLASSES[int(probabilities.argmax())] == "setosa" and probabilities[0] > 0.9


def test_the_demo_model_classifies_flowers_it_did_not_see():
    weights, bias = fit(*iris_like(1))
    features, labels = iris_like(99)
    accuracy = ((features @ weights + bias).argmax(axis=1) == labels).mean()
    assert accuracy > 0.9
    virginica = np.array([6.3, 3.3, 6.0, 2.5]) @ weights + bias
    assert IRIS_CLASSES[int(virginica.argmax())] == "virginica"

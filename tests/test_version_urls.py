"""Version URLs in API answers are built without reverse() per row (bench/); they must be
exactly what reverse() gives, whatever the model's name."""

from types import SimpleNamespace

import pytest
from django.urls import reverse

from registry.api.serializers import ModelVersionSerializer


@pytest.mark.parametrize("name", ["iris", "churn model", "100%", "a?b#c", "modèle-é", "x:y@z", "tilde~+!$&'()*,;="])
def test_a_version_url_is_what_reverse_gives(name):
    version = SimpleNamespace(model=SimpleNamespace(name=name), version=7)
    expected = reverse("api:version-detail", kwargs={"name": name, "version": 7})
    assert ModelVersionSerializer().get_url(version) == expected

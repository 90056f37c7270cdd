"""Model versions the graph tests build on: the digits classifier and a random-forest
fallback for it (graph_editor/samples.py), uploaded to acme."""
import pytest

from graph_editor.samples import digits_fallback_classifier_onnx
from graph_editor.services import model_version_upload


@pytest.fixture
def digits(acme, digits_onnx):
    return model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])


@pytest.fixture
def fallback(acme):
    return model_version_upload(tenant=acme, model_name="digits-fallback", chunks=[digits_fallback_classifier_onnx()])

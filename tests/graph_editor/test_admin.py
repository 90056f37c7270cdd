"""The Django admin for models and their (immutable) versions."""
import pytest

from graph_editor.models import MLModel, ModelVersion
from graph_editor.services import model_version_upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def digits_v1(acme, digits_onnx):
    return model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx], description="8x8 digits")


@pytest.mark.parametrize(
    "url, count",
    [
        ("/admin/graph_editor/mlmodel/", 1),
        ("/admin/graph_editor/mlmodel/?q=digit", 1),
        ("/admin/graph_editor/mlmodel/?q=iris", 0),
        ("/admin/graph_editor/modelversion/", 1),
        ("/admin/graph_editor/modelversion/?has_batch_dim__exact=1", 1),
        ("/admin/graph_editor/modelversion/?q=digits", 1),
    ],
)
def test_lists_search_and_filter(admin_client, digits_v1, url, count):
    response = admin_client.get(url)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == count


def test_models_come_only_from_uploads_and_only_their_description_is_editable(admin_client, digits_v1):
    assert admin_client.get("/admin/graph_editor/mlmodel/add/").status_code == 403
    url = f"/admin/graph_editor/mlmodel/{digits_v1.model_id}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and list(page.context["adminform"].form.fields) == ["description"]
    assert digits_v1.sha256.encode() in page.content  # the versions, read-only, inline
    admin_client.post(url, {"description": "handwritten digits", "name": "renamed",
                            "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"})
    model = MLModel.unscoped.get(pk=digits_v1.model_id)
    assert (model.name, model.description) == ("digits", "handwritten digits")
    assert admin_client.get(f"/admin/graph_editor/mlmodel/{digits_v1.model_id}/delete/").status_code == 403


def test_versions_are_read_only(admin_client, digits_v1):
    url = f"/admin/graph_editor/modelversion/{digits_v1.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content and digits_v1.sha256.encode() in page.content
    assert admin_client.post(url, {"sha256": "0" * 64}).status_code == 403
    assert admin_client.get("/admin/graph_editor/modelversion/add/").status_code == 403
    assert admin_client.get(f"/admin/graph_editor/modelversion/{digits_v1.pk}/delete/").status_code == 403
    assert ModelVersion.unscoped.get(pk=digits_v1.pk).sha256 == digits_v1.sha256

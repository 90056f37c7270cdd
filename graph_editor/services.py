import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from gateway.contract.errors import (
    Conflict,
    NotFound,
    PlatformError,
    QuotaExceeded,
    validation_message,
)
from graph_editor.models import MLModel, ModelVersion
from graph_editor.onnx_inspect import InvalidModel, inspect_onnx
from graph_editor.signals import model_deleting
from tenants.models import Tenant, slug_name_clean
from tenants.quotas import quota_effective

CHUNK = 1024 * 1024


class PayloadTooLarge(PlatformError):
    status = 413
    code = "file_too_large"


def _validate_filename(filename: str) -> None:
    if not filename:
        return
    if "/" in filename or "\\" in filename or ".." in filename or filename.startswith("~") or "\x00" in filename:
        raise PlatformError(f"Rejected file name {filename!r}: it contains a path.", code="path_traversal")


def _printable(text: str) -> str:
    """The producer is shown as it is: without the NULs (the database refuses them) or other
    control characters a file may carry."""
    return "".join(ch for ch in text if ch.isprintable())


def _size_text(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"


def _spool_upload(chunks, directory: Path) -> tuple[Path, str, int]:
    """Write the upload to a temporary file next to its destination, enforcing the size limit."""
    directory.mkdir(parents=True, exist_ok=True)
    limit = settings.MODEL_UPLOAD_MAX_BYTES
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".onnx", dir=directory)
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The file is larger than the {_size_text(limit)} upload limit.")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidModel("The uploaded file is empty.")
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path, digest.hexdigest(), size


def model_version_upload(
    *, tenant: Tenant, model_name: str, chunks, filename: str = "", description: str = "", actor=None
) -> ModelVersion:
    """Validate an ONNX upload and store it as the next version of `model_name`.

    Nothing is kept when anything fails: no file, no row."""
    model_name = slug_name_clean(model_name, what="model")
    _validate_filename(filename)
    storage = Path(settings.MODEL_STORAGE_DIR)
    tmp_path, sha256, size = _spool_upload(chunks, storage / ".incoming")
    final_path: Path | None = None
    try:
        signature = inspect_onnx(tmp_path)
        with transaction.atomic():
            if not MLModel.objects.for_tenant(tenant).filter(name=model_name).exists():
                Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
                quota_check_model_create(tenant=tenant)
            model, created = MLModel.unscoped.select_for_update().get_or_create(
                tenant=tenant, name=model_name, defaults={"description": description, "created_by": actor}
            )
            if not created and description and model.description != description:
                model.description = description
                model.save(update_fields=["description"])
            last = model.versions.order_by("-version").values_list("version", flat=True).first() or 0
            relative = Path(str(tenant.pk)) / str(model.pk) / str(last + 1) / "model.onnx"
            version = ModelVersion(
                tenant=tenant, model=model, version=last + 1, file_path=str(relative), sha256=sha256,
                size_bytes=size, opset=signature.opset, producer=_printable(signature.producer)[:120],
                inputs=signature.inputs, outputs=signature.outputs, has_batch_dim=signature.has_batch_dim,
                created_by=actor,
            )
            try:
                version.full_clean()
            except ValidationError as exc:
                # What the file declares and the columns cannot hold, e.g. a negative opset.
                raise InvalidModel(f"The model's metadata is out of range: {validation_message(exc)}") from None
            final_path = storage / relative
            final_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_path, final_path)
            version.save()
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if final_path is not None:
            final_path.unlink(missing_ok=True)
            _remove_empty_dirs(final_path.parent, storage)
        if isinstance(exc, IntegrityError):
            raise Conflict("Another upload of this model finished at the same moment; try again.") from exc
        raise
    return version


def _remove_empty_dirs(directory: Path, stop: Path) -> None:
    directory, stop = directory.resolve(), stop.resolve()
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def quota_check_model_create(*, tenant: Tenant) -> None:
    limit = quota_effective(tenant=tenant)["values"]["max_models"]
    if limit is not None and MLModel.objects.for_tenant(tenant).count() >= limit:
        raise QuotaExceeded(f"Your tenant may have at most {limit} models; delete one or ask for a higher limit.")


def model_delete(*, tenant: Tenant, model_id: int) -> None:
    """Delete a model and its files; refused while any version is deployed."""
    with transaction.atomic():
        model = MLModel.objects.for_tenant(tenant).select_for_update().filter(pk=model_id).first()
        if model is None:
            raise NotFound("No such model in this tenant.")
        # The deployments layer refuses (Conflict) while a version is deployed.
        model_deleting.send(sender=MLModel, model=model)
        directory = Path(settings.MODEL_STORAGE_DIR) / str(tenant.pk) / str(model.pk)
        model.delete()
        transaction.on_commit(lambda: shutil.rmtree(directory, ignore_errors=True))

"""workers' answers to the signals of the layers below it (connected in WorkersConfig.ready)."""
from django.dispatch import receiver

from gateway.contract.errors import Conflict
from graph_editor.signals import model_deleting
from workers.selectors import deployment_active_for_model


@receiver(model_deleting)
def model_deleting_refuse_while_deployed(sender, *, model, **kwargs) -> None:
    if deployment_active_for_model(tenant=model.tenant, model_id=model.pk):
        raise Conflict("This model has active deployments; undeploy them first.")

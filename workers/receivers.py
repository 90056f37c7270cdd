"""workers' answers to the signals of the layers below it (connected in WorkersConfig.ready).

A model or graph still deployed cannot be deleted (409). Once undeployed, its deployments
are history only: they go with it (their usage events keep the deployment's name), since
they would otherwise hold the version they point at."""
from django.dispatch import receiver

from gateway.contract.errors import Conflict
from graph_editor.signals import graph_deleting, model_deleting
from workers.models import ACTIVE_STATES, Deployment
from workers.selectors import deployment_active_for_model


@receiver(model_deleting)
def model_deleting_refuse_while_deployed(sender, *, model, **kwargs) -> None:
    if deployment_active_for_model(tenant=model.tenant, model_id=model.pk):
        raise Conflict("This model has active deployments; undeploy them first.")
    Deployment.objects.for_tenant(model.tenant).filter(model_version__model_id=model.pk).delete()


@receiver(graph_deleting)
def graph_deleting_refuse_while_deployed(sender, *, graph, **kwargs) -> None:
    deployments = Deployment.objects.for_tenant(graph.tenant).filter(graph_version__graph_id=graph.pk)
    active = sorted(deployments.filter(state__in=ACTIVE_STATES).values_list("name", flat=True))
    if active:
        raise Conflict(f"This graph is deployed as {', '.join(active)}; undeploy it first.")
    deployments.delete()

from django.shortcuts import render
from django.utils import timezone

from billing.selectors import usage_recent, usage_summary
from graph_editor.selectors import model_list
from portal.views.access import tenant_page
from tenants.selectors import api_key_list
from workers.models import DeploymentState
from workers.selectors import deployment_list


@tenant_page
def dashboard(request):
    tenant = request.tenant
    deployments = list(deployment_list(tenant=tenant))
    start_of_day = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    ready = [d for d in deployments if d.state == DeploymentState.READY]
    return render(request, "portal/dashboard.html", {
        "models_count": model_list(tenant=tenant).count(),
        "deployments": deployments,
        "ready_count": len(ready),
        "keys_count": sum(k.is_active for k in api_key_list(tenant=tenant)),
        "summary": usage_summary(tenant=tenant),
        "requests_today": usage_recent(tenant=tenant, limit=None).filter(occurred_at__gte=start_of_day).count(),
        "recent": usage_recent(tenant=tenant, limit=8),
        # The quick start names a real deployment when there is one, so it can be pasted as is.
        "example": (ready or deployments)[0].name if deployments else "my-model",
    })

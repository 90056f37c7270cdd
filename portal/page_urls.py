from django.contrib.auth import views as auth_views
from django.urls import path

from portal.views import billing, dashboard, deployments, graphs, keys, models, quotas, tenants, usage

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", dashboard.dashboard, name="dashboard"),
    path("models/", models.models, name="models"),
    path("models/<int:model_id>/", models.detail, name="model-detail"),
    path("models/<int:model_id>/delete/", models.delete, name="model-delete"),
    path("graphs/", graphs.graphs, name="graphs"),
    path("graphs/<int:graph_id>/", graphs.editor, name="graph-editor"),
    path("deployments/", deployments.deployments, name="deployments"),
    path("deployments/<int:deployment_id>/undeploy/", deployments.undeploy, name="deployment-undeploy"),
    path("deployments/<int:deployment_id>/retry/", deployments.retry, name="deployment-retry"),
    path("deployments/<int:deployment_id>/unload/", deployments.unload, name="deployment-unload"),
    path("deployments/<int:deployment_id>/settings/", deployments.settings_update, name="deployment-settings"),
    path("keys/", keys.keys, name="keys"),
    path("keys/<int:key_id>/revoke/", keys.revoke, name="key-revoke"),
    path("usage/", usage.usage, name="usage"),
    path("quotas/", quotas.quotas, name="quotas"),
    path("quotas/deployment-limits/<int:deployment_id>/", quotas.deployment_limits, name="quota-deployment-limits"),
    path("quotas/key-limits/<int:key_id>/", quotas.key_limits, name="quota-key-limits"),
    path("billing/", billing.billing, name="billing"),
    path("billing/spend-limit/", billing.spend_limit, name="billing-spend-limit"),
    path("billing/invoices/<int:invoice_id>/", billing.invoice_detail, name="invoice-detail"),
    path("billing/invoices/<int:invoice_id>/pdf/", billing.invoice_pdf_download, name="invoice-pdf"),
    path("billing/invoices/<int:invoice_id>/csv/", billing.invoice_csv_download, name="invoice-csv"),
    path("billing/invoices/<int:invoice_id>/lines/<int:line_id>/requests.csv", billing.line_requests_download,
         name="invoice-line-requests"),
    path("tenant/switch/", tenants.tenant_switch, name="tenant-switch"),
]

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing.api import UsageListView, UsageSummaryView, UsageTimeseriesView
from billing.api_billing import (
    BillingCurrentView,
    InvoiceCsvView,
    InvoiceDetailView,
    InvoiceListView,
    InvoicePdfView,
    LineRequestsView,
    PricesView,
    SpendLimitView,
)
from graph_editor.api import (
    ModelDetailView,
    ModelListView,
    ModelVersionDetailView,
    ModelVersionListView,
)
from graph_editor.api_graphs import (
    GraphDetailView,
    GraphListView,
    GraphOpsView,
    GraphValidateView,
    GraphVersionDetailView,
    GraphVersionListView,
)
from portal.api_errors import api_not_found
from tenants.api import ApiKeyListView, ApiKeyRevokeView, TenantView
from tenants.api_audit import AuditLogListView
from tenants.api_quotas.overview import QuotaOverviewView
from tenants.api_quotas.plans import PlanDetailView, PlanListView, TenantPlanView
from tenants.api_quotas.quotas import QuotaDetailView, QuotaListView
from tenants.api_quotas.scope_limits import DeploymentLimitsView, KeyLimitsView
from workers.api import DeploymentDetailView, DeploymentListView, DeploymentNodesView, DeploymentUnloadView

urlpatterns = [
    path("tenant", TenantView.as_view(), name="api-tenant"),
    path("keys", ApiKeyListView.as_view(), name="api-keys"),
    path("keys/<int:key_id>/revoke", ApiKeyRevokeView.as_view(), name="api-key-revoke"),
    path("keys/<int:key_id>/limits", KeyLimitsView.as_view(), name="api-key-limits"),
    path("models", ModelListView.as_view(), name="api-models"),
    path("models/<int:model_id>", ModelDetailView.as_view(), name="api-model"),
    path("models/<int:model_id>/versions", ModelVersionListView.as_view(), name="api-model-versions"),
    path("versions/<int:version_id>", ModelVersionDetailView.as_view(), name="api-version"),
    path("graphs", GraphListView.as_view(), name="api-graphs"),
    path("graphs/validate", GraphValidateView.as_view(), name="api-graphs-validate"),
    path("graphs/ops", GraphOpsView.as_view(), name="api-graphs-ops"),
    path("graphs/<int:graph_id>", GraphDetailView.as_view(), name="api-graph"),
    path("graphs/<int:graph_id>/versions", GraphVersionListView.as_view(), name="api-graph-versions"),
    path("graphs/<int:graph_id>/versions/<int:number>", GraphVersionDetailView.as_view(),
         name="api-graph-version"),
    path("deployments", DeploymentListView.as_view(), name="api-deployments"),
    path("deployments/<int:deployment_id>", DeploymentDetailView.as_view(), name="api-deployment"),
    path("deployments/<int:deployment_id>/unload", DeploymentUnloadView.as_view(), name="api-deployment-unload"),
    path("deployments/<int:deployment_id>/nodes", DeploymentNodesView.as_view(), name="api-deployment-nodes"),
    path("deployments/<int:deployment_id>/limits", DeploymentLimitsView.as_view(), name="api-deployment-limits"),
    path("quotas", QuotaOverviewView.as_view(), name="api-quotas"),
    path("usage", UsageListView.as_view(), name="api-usage"),
    path("usage/summary", UsageSummaryView.as_view(), name="api-usage-summary"),
    path("usage/timeseries", UsageTimeseriesView.as_view(), name="api-usage-timeseries"),
    path("billing/current", BillingCurrentView.as_view(), name="api-billing-current"),
    path("billing/invoices", InvoiceListView.as_view(), name="api-billing-invoices"),
    path("billing/invoices/<int:invoice_id>", InvoiceDetailView.as_view(), name="api-billing-invoice"),
    path("billing/invoices/<int:invoice_id>.pdf", InvoicePdfView.as_view(), name="api-billing-invoice-pdf"),
    path("billing/invoices/<int:invoice_id>.csv", InvoiceCsvView.as_view(), name="api-billing-invoice-csv"),
    path("billing/invoices/<int:invoice_id>/lines/<int:line_id>/requests", LineRequestsView.as_view(),
         name="api-billing-line-requests"),
    path("billing/prices", PricesView.as_view(), name="api-billing-prices"),
    path("billing/spend-limit", SpendLimitView.as_view(), name="api-billing-spend-limit"),
    path("audit-log", AuditLogListView.as_view(), name="api-audit-log"),
    # Platform staff only.
    path("admin/plans", PlanListView.as_view(), name="api-admin-plans"),
    path("admin/plans/<int:plan_id>", PlanDetailView.as_view(), name="api-admin-plan"),
    path("admin/quotas", QuotaListView.as_view(), name="api-admin-quotas"),
    path("admin/quotas/<int:quota_id>", QuotaDetailView.as_view(), name="api-admin-quota"),
    path("admin/tenants/<int:tenant_id>/plan", TenantPlanView.as_view(), name="api-admin-tenant-plan"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^(?P<path>[\s\S]*)$", api_not_found),  # [\s\S]: a path with a newline is an API path too
]

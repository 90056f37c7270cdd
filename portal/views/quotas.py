"""The Quotas page: the plan, each limit and where it comes from, this month's
consumption, and the tenant's own limits on its deployments and keys (owners and admins
narrow them here; members read)."""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.quotas import quota_overview
from gateway.contract.errors import NotFound, PlatformError
from portal.forms import ScopeLimitsForm
from portal.views.access import tenant_page
from tenants.models import REQUEST_LIMITS, Enforcement, Quota
from tenants.quotas import quota_set_within_tenant
from tenants.selectors import api_key_list
from workers.selectors import deployment_get

# Above this share of a limit, its bar turns to a warning.
WARN_AT = 80


def _number(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{int(value):,}"


def _bytes(value: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size and value % size == 0:
            return f"{value // size:,} {unit}"
    return f"{value:,} bytes"


def _meter(key: str, label: str, used, limit, unit: str = "", *, source=None, enforcement=None) -> dict:
    """One consumption bar: used against its limit (no bar when there is no limit)."""
    meter = {"key": key, "label": label, "used": _number(used), "limit": None if limit is None else _number(limit),
             "unit": unit, "source": source, "soft": enforcement == Enforcement.SOFT, "percent": None, "state": "ok"}
    if limit is not None:
        percent = 100 if limit == 0 else min(100, round(100 * used / limit))
        meter["percent"] = percent
        meter["state"] = "over" if used >= limit else "warn" if percent >= WARN_AT else "ok"
    return meter


def _scope_limits_text(limits: dict | None) -> list[str]:
    if not limits:
        return []
    text = []
    if limits["rate_per_second"] is not None:
        burst = f" (burst {_number(limits['rate_burst'])})" if limits["rate_burst"] is not None else ""
        text.append(f"{_number(limits['rate_per_second'])} requests/s{burst}")
    if limits["max_concurrency"] is not None:
        text.append(f"{_number(limits['max_concurrency'])} in flight")
    if limits["monthly_requests"] is not None:
        text.append(f"{_number(limits['monthly_requests'])} requests/month ({limits['monthly_requests_enforcement']})")
    if limits["monthly_compute_seconds"] is not None:
        text.append(f"{_number(limits['monthly_compute_seconds'])} compute s/month "
                    f"({limits['monthly_compute_enforcement']})")
    if limits["max_payload_bytes"] is not None:
        text.append(f"bodies up to {_bytes(limits['max_payload_bytes'])}")
    return text


def _scope_row(entry: dict, prefix: str, can_manage: bool, failed: dict) -> dict:
    limits, usage = entry["limits"], entry["usage"]
    own = limits or {}
    row = {**entry, "scope": prefix, "limits_text": _scope_limits_text(limits), "meters": [
        _meter("requests", "Requests this month", usage["requests"], own.get("monthly_requests"),
               enforcement=own.get("monthly_requests_enforcement")),
        _meter("compute", "Compute this month", usage["compute_seconds"], own.get("monthly_compute_seconds"), "s",
               enforcement=own.get("monthly_compute_enforcement")),
        _meter("in_flight", "In flight", usage["in_flight"], own.get("max_concurrency")),
    ]}
    if can_manage:
        row["form"] = failed.get(prefix) or ScopeLimitsForm(prefix=prefix, initial=limits or {}, instance=Quota())
    return row


def _page(request, *, failed: dict | None = None, status: int = 200):
    overview = quota_overview(tenant=request.tenant)
    limits, source, usage = overview["tenant"]["limits"], overview["tenant"]["source"], overview["tenant"]["usage"]
    can_manage = request.membership.can_manage
    failed = failed or {}
    meters = [
        _meter("requests", "Requests this month", usage["requests"], limits["monthly_requests"],
               source=source["monthly_requests"], enforcement=limits["monthly_requests_enforcement"]),
        _meter("compute", "Compute this month", usage["compute_seconds"], limits["monthly_compute_seconds"], "s",
               source=source["monthly_compute_seconds"], enforcement=limits["monthly_compute_enforcement"]),
        _meter("in_flight", "Requests in flight", usage["in_flight"], limits["max_concurrency"],
               source=source["max_concurrency"]),
        _meter("models", "Models", usage["models"], limits["max_models"], source=source["max_models"]),
        _meter("deployments", "Deployments", usage["deployments"], limits["max_deployments"],
               source=source["max_deployments"]),
        _meter("memory", "Model memory", usage["model_memory_mb"], limits["max_model_memory_mb"], "MB",
               source=source["max_model_memory_mb"]),
    ]

    def limit(field, render=_number):
        return {"field": field, "value": None if limits[field] is None else render(limits[field]),
                "source": source[field]}

    burst = limit("rate_burst")
    if limits["rate_per_second"] is not None and limits["rate_burst"] is None:
        # The gateway's default, as it applies it.
        burst.update(value=_number(max(1, int(limits["rate_per_second"]))), source=source["rate_per_second"],
                     note="one second's worth")
    other_limits = [
        {"label": "Requests per second", **limit("rate_per_second")},
        {"label": "Burst above that rate", **burst},
        {"label": "Largest request body", **limit("max_payload_bytes", _bytes)},
        {"label": "Instances per deployment", **limit("max_instances")},
        {"label": "Largest batch size", **limit("max_batch_size")},
        {"label": "Hardware", **limit("allowed_hardware", lambda kinds: ", ".join(k.upper() for k in kinds))},
    ]
    return render(request, "portal/quotas.html", {
        "plan": overview["plan_name"],
        "meters": meters,
        "limits": other_limits,
        "deployment_rows": [_scope_row(d, f"d{d['id']}", can_manage, failed) for d in overview["deployments"]],
        "key_rows": [_scope_row(k, f"k{k['id']}", can_manage, failed) for k in overview["keys"]],
    }, status=status)


@tenant_page
def quotas(request):
    return _page(request)


def _limits_change(request, target, prefix: str, name: str):
    form = ScopeLimitsForm(request.POST, prefix=prefix, instance=Quota())
    if form.is_valid():
        try:
            quota_set_within_tenant(tenant=request.tenant, target=target,
                                    values={field: form.cleaned_data[field] for field in REQUEST_LIMITS})
        except NotFound:
            raise
        except PlatformError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Saved the limits of {name}: the gateway applies them from the next request.")
            return redirect("quotas")
    return _page(request, failed={prefix: form}, status=400)


@tenant_page
@require_POST
def deployment_limits(request, deployment_id: int):
    deployment = deployment_get(tenant=request.tenant, deployment_id=deployment_id)
    return _limits_change(request, deployment, f"d{deployment.pk}", deployment.name)


@tenant_page
@require_POST
def key_limits(request, key_id: int):
    api_key = api_key_list(tenant=request.tenant).filter(pk=key_id).first()
    if api_key is None:
        raise NotFound("No such API key in this tenant.")
    return _limits_change(request, api_key, f"k{api_key.pk}", api_key.label)

from django.db import migrations

STANDARD_LIMITS = {
    "rate_per_second": 200.0, "rate_burst": 400, "max_concurrency": 64, "max_payload_bytes": 32 * 2**20,
    "max_models": 100, "max_deployments": 20, "max_instances": 4, "max_model_memory_mb": 16384,
    "allowed_hardware": ["cpu", "gpu"], "max_batch_size": 256,
}


def create_standard_plan(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    Quota = apps.get_model("tenants", "Quota")
    if Plan.objects.filter(is_default=True).exists():
        return
    plan = Plan.objects.create(name="Standard", slug="standard", is_default=True)
    Quota.objects.create(level="plan", plan=plan, **STANDARD_LIMITS)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0002_plan_tenant_plan_quota")]
    operations = [migrations.RunPython(create_standard_plan, migrations.RunPython.noop)]

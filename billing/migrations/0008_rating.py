from django.db import migrations, models


class Migration(migrations.Migration):
    """Rating: read a tenant's month of rollups from one index; find rollups rolled again after
    an invoice was finalized (late usage)."""

    dependencies = [
        ("billing", "0007_stripe_objects"),
    ]

    operations = [
        # Rating reads a tenant's month in this index's order: covering it, that is an index-only scan.
        migrations.RemoveConstraint(model_name="usagerollup", name="usage_rollup_unique"),
        migrations.AddConstraint(
            model_name="usagerollup",
            constraint=models.UniqueConstraint(fields=["tenant", "hour", "deployment_id", "hardware", "meter"],
                                               name="usage_rollup_unique", nulls_distinct=False,
                                               include=["quantity", "deployment_name"]),
        ),
        migrations.AddIndex(
            model_name="usagerollup",
            index=models.Index(fields=["tenant", "rolled_at", "hour"], name="usage_rollup_tenant_rolled"),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0006_prices_invoices'),
    ]

    operations = [
        migrations.CreateModel(
            name='StripeObject',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('meter', 'Meter (key: component)'), ('price', 'Price (key: <price version id>-<component or base_fee>)'), ('subscription', 'Subscription (key: tenant id)'), ('cursor', 'How far the meter event outbox has read the rollups (key: meter_events)')], max_length=16)),
                ('key', models.CharField(max_length=64)),
                ('stripe_id', models.CharField(blank=True, max_length=64)),
                ('data', models.JSONField(blank=True, default=dict)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['kind', 'key'],
                'constraints': [models.UniqueConstraint(fields=('kind', 'key'), name='stripeobject_unique_key')],
            },
        ),
    ]

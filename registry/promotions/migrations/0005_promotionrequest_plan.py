# Stand-in for H1's migration (the request's plan snapshot); the lead keeps H1's.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0004_webhook_deliveries_plural"),
    ]

    operations = [
        migrations.AddField(
            model_name="promotionrequest",
            name="plan",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]

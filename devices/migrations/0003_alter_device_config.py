# The config help text is static now (the defaults change in edge_package.contracts without a
# migration; the admin form lists their current values). detectors.0001_initial depends on this
# migration by name.

from django.db import migrations, models

import devices.models


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0002_fleet"),
    ]

    operations = [
        migrations.AlterField(
            model_name="device",
            name="config",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Overrides of the edge defaults (edge_package.contracts.EDGE_CONFIG_DEFAULTS). Masks are polygons in 0..1 frame coordinates.",
                validators=[devices.models.validate_edge_config_field],
                verbose_name="edge configuration",
            ),
        ),
    ]

"""The IO manager that hands a staged month to the warehouse.

The asset streams and validates; this stores its result. Keeping the load here, not in the asset,
is what lets one asset body serve every warehouse.
"""

import shutil

import dagster as dg

from pipeline.ingest.stream import StagedLoad
from pipeline.warehouse.base import Warehouse


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Replaces the output's month atomically in the warehouse, then drops the staged parts."""

    warehouse: dg.ResourceDependency[Warehouse]

    def handle_output(self, context: dg.OutputContext, obj: StagedLoad) -> None:
        try:
            self.warehouse.replace_month(obj, context.run_id)
        finally:
            shutil.rmtree(obj.staging_dir, ignore_errors=True)
        context.log.info(
            f"{obj.dataset} {obj.month}: replaced with {obj.rows_loaded} rows and "
            f"{obj.rows_rejected} rejects from {obj.source_file}"
        )

    def load_input(self, context: dg.InputContext) -> None:
        raise NotImplementedError(
            f"{context.asset_key.to_user_string()} lives in the warehouse: read it with SQL or "
            "dbt, not as a Python input"
        )

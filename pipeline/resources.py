"""Resources other than the warehouse: where files land, where validated parts are staged and
where reports are written."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipeline.ingest.stream import DEFAULT_BLOCK_BYTES


class LandingFiles(dg.ConfigurableResource):
    """The landing folder monthly files arrive in, the staging folder for Parquet parts, and the
    folder reports are written to.

    `reports_url` (PIPELINE_REPORTS_URL) is where readers open that folder, e.g. a web server
    or a share serving it; links in the UI and in alerts use it (else the file's own path, which
    only opens on the machine that wrote it).

    `pii_key` (PIPELINE_PII_KEY) is the secret `pii: hash` columns are hashed with as they are
    read; a dataset with such a column is refused while it is unset. `workers`
    (PIPELINE_INGEST_WORKERS) is how many blocks of a file are validated at once; None: one per
    core available to the process.
    """

    landing_dir: str
    staging_dir: str
    reports_dir: str = "data/reports"
    reports_url: str | None = None
    block_bytes: int = DEFAULT_BLOCK_BYTES
    workers: int | None = None
    pii_key: str | None = None

    @property
    def landing_path(self) -> Path:
        return Path(self.landing_dir)

    @property
    def staging_path(self) -> Path:
        return Path(self.staging_dir)

    @property
    def reports_path(self) -> Path:
        return Path(self.reports_dir)

    def report_url(self, report: Path) -> str:
        """Where a reader opens a report file of the reports folder."""
        if self.reports_url:
            return f"{self.reports_url.rstrip('/')}/{report.name}"
        return report.resolve().as_uri()

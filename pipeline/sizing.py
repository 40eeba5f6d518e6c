"""How big a month's run pod is, from the size of the month's file.

The Kubernetes run launcher reads a run's `dagster-k8s/config` tag; the landing sensor sets it
per month, so a 100 GB month gets more cores than a 100 MB one. Memory stays bounded whatever the
size (the ingest reads in blocks; README, "Scaling out"), so it grows with the cores the ingest
uses, not with the file. The figures are first estimates until `make bench` measures them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

K8S_CONFIG_TAG = "dagster-k8s/config"
GB = 1000**3


@dataclass(frozen=True)
class PodSize:
    """Cores and memory for months up to `up_to_bytes`."""

    up_to_bytes: float
    cores: int
    memory: str


SIZES = (
    PodSize(1 * GB, cores=1, memory="2Gi"),
    PodSize(10 * GB, cores=2, memory="3Gi"),
    PodSize(100 * GB, cores=4, memory="6Gi"),
    PodSize(float("inf"), cores=8, memory="10Gi"),
)


def pod_size(file_bytes: int) -> PodSize:
    """The smallest size that takes a file of `file_bytes` as delivered."""
    return next(size for size in SIZES if file_bytes <= size.up_to_bytes)


def k8s_run_tags(file_bytes: int) -> dict[str, str]:
    """The run tag that sizes the month's pod: requests equal limits, so the pod is never
    throttled below what it was scheduled for, and the ingest uses as many workers as cores."""
    size = pod_size(file_bytes)
    resources = {"cpu": str(size.cores), "memory": size.memory}
    config = {
        "container_config": {
            "resources": {"requests": resources, "limits": resources},
            "env": [{"name": "PIPELINE_INGEST_WORKERS", "value": str(size.cores)}],
        }
    }
    return {K8S_CONFIG_TAG: json.dumps(config)}

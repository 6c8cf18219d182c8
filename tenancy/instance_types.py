"""The instance types a managed online deployment may run on, with the vCPUs and memory each
has: what a deployment's worker count (one synchronous worker per vCPU) and, for a pool, its
model cache's byte budget are derived from.

Sources:
- the sizes managed online endpoints accept:
  https://learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list
- vCPUs and memory of each size, from its series page:
  https://learn.microsoft.com/azure/virtual-machines/sizes/general-purpose/dsv2-series,
  https://learn.microsoft.com/azure/virtual-machines/sizes/general-purpose/dasv4-series,
  https://learn.microsoft.com/azure/virtual-machines/sizes/compute-optimized/fsv2-series,
  https://learn.microsoft.com/azure/virtual-machines/sizes/memory-optimized/esv3-series,
  https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ncast4v3-series,
  https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/nca100v4-series
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class InstanceType:
    vcpus: int
    memory_gib: float


INSTANCE_TYPES: Final[dict[str, InstanceType]] = {
    # General purpose
    "Standard_DS1_v2": InstanceType(1, 3.5),
    "Standard_DS2_v2": InstanceType(2, 7),
    "Standard_DS3_v2": InstanceType(4, 14),
    "Standard_DS4_v2": InstanceType(8, 28),
    "Standard_DS5_v2": InstanceType(16, 56),
    "Standard_D2as_v4": InstanceType(2, 8),
    "Standard_D4as_v4": InstanceType(4, 16),
    "Standard_D8as_v4": InstanceType(8, 32),
    "Standard_D16as_v4": InstanceType(16, 64),
    # Compute optimized
    "Standard_F2s_v2": InstanceType(2, 4),
    "Standard_F4s_v2": InstanceType(4, 8),
    "Standard_F8s_v2": InstanceType(8, 16),
    "Standard_F16s_v2": InstanceType(16, 32),
    "Standard_F32s_v2": InstanceType(32, 64),
    # Memory optimized
    "Standard_E2s_v3": InstanceType(2, 16),
    "Standard_E4s_v3": InstanceType(4, 32),
    "Standard_E8s_v3": InstanceType(8, 64),
    "Standard_E16s_v3": InstanceType(16, 128),
    # GPU
    "Standard_NC4as_T4_v3": InstanceType(4, 28),
    "Standard_NC8as_T4_v3": InstanceType(8, 56),
    "Standard_NC16as_T4_v3": InstanceType(16, 110),
    "Standard_NC64as_T4_v3": InstanceType(64, 440),
    "Standard_NC24ads_A100_v4": InstanceType(24, 220),
    "Standard_NC48ads_A100_v4": InstanceType(48, 440),
    "Standard_NC96ads_A100_v4": InstanceType(96, 880),
}


def workers_for(instance_type: str) -> int:
    """Synchronous scoring workers for an instance: one per vCPU. score.py runs each ONNX
    session on one intra-op thread, so a worker is one core's worth of work and more
    workers than cores would only queue on the CPU."""
    return INSTANCE_TYPES[instance_type].vcpus


#: The share of an instance's memory a pooled deployment's models may hold; the rest is the
#: workers' Python and ONNX Runtime, the OS and the data collector's sidecar.
MODEL_MEMORY_SHARE: Final = 0.5


def model_cache_bytes(instance_type: str) -> int:
    """One worker's model cache on a pooled deployment: its share of the instance's model
    memory (each worker process holds the models it has loaded)."""
    found = INSTANCE_TYPES[instance_type]
    return int(found.memory_gib * 2**30 * MODEL_MEMORY_SHARE / found.vcpus)

"""Putting things where the cluster reads them: the service (Anyscale SDK or a RayService),
model weights and LoRA adapters (validated, checksummed, never visible half-written)."""

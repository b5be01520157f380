"""Device and precision for torch extractors, decided once per actor from the stage's resources.

A stage that asks for a GPU (`resources.gpu > 0`) runs its model on CUDA; one that does not runs on
CPU even when a GPU is visible, so CPU stages never compete with GPU stages for device memory.
Half precision is used only on CUDA (CPU bf16 matmuls are slow on most CPUs and fp16 is not
supported for every op there): bf16 where the GPU supports it, else fp16. Options:
`dtype: auto|float32|bfloat16|float16` overrides, e.g. float32 for a model that overflows in fp16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Placement:
    device: str     # "cuda" or "cpu"
    dtype: Any      # a torch.dtype

    def to(self, model: Any) -> Any:
        """The model on this device and dtype, in eval mode."""
        return model.to(device=self.device, dtype=self.dtype).eval()


def placement(extractor: Any, *, half_ok: bool = True) -> Placement:
    """Where `extractor` (an Extractor with .spec and .option) runs its model.

    `half_ok=False` keeps float32 under `dtype: auto` for models whose outputs are known to degrade
    in half precision."""
    import torch

    wants_gpu = extractor.spec.resources.gpu > 0
    if wants_gpu and not torch.cuda.is_available():
        raise RuntimeError(
            f"extractor {extractor.name!r}: resources.gpu={extractor.spec.resources.gpu} but torch sees "
            "no CUDA device in this worker; use the CUDA worker image (worker_image/Dockerfile, "
            "--build-arg VARIANT=gpu) on a GPU node, or set resources.gpu: 0")
    device = "cuda" if wants_gpu else "cpu"
    name = extractor.option("dtype", "auto", str)
    if name not in DTYPES:
        raise ValueError(f"extractor {extractor.name!r}: options.dtype must be one of {', '.join(DTYPES)} "
                         f"(got {name!r})")
    if name == "auto":
        if device == "cuda" and half_ok:
            name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            name = "float32"
    if device == "cpu" and name == "float16":
        raise ValueError(f"extractor {extractor.name!r}: options.dtype float16 needs a GPU "
                         "(resources.gpu > 0); use float32 or bfloat16 on CPU")
    return Placement(device, getattr(torch, name))

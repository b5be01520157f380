"""GPU: the image-embedding stage, 1024-px JPEG bytes in, embeddings out, vs the model-only loop.

- pipeline path: the pipeline's own decode (`preprocess.image.decode_image`, JPEG draft mode,
  maxSide as an embedding job would set it) in a process pool of every CPU core (what Ray read
  tasks do), feeding the `image-embedding` extractor (its image processor + the model) batch by batch;
- model-only: the same extractor's model on already-preprocessed pixel tensors resident on the
  device, same batch size and dtype.

Reported: images/s of each and the ratio. Needs no Ray (the lent GPU machines have none). The model
is a CLIP of ViT-B/16 size, randomly initialised from a config (no weights can be downloaded; the
speed of a tower does not depend on its weights). On a machine without CUDA it runs on the CPU,
which only shows that the script works.

    python benchmarks/gpu_image_embedding.py [--images 4096] [--batch 256] [--max-side 256] [--tiny]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "worker_image"), str(ROOT)]

from prism_api import ExtractorSpec  # noqa: E402
from prism_pipeline.extractors.image_embedding import ImageEmbedding  # noqa: E402
from prism_pipeline.preprocess.image import decode_image  # noqa: E402


def clip_model(path: Path, tiny: bool) -> Path:
    """A CLIP with a ViT-B/16 image tower (or a tiny one for a smoke run), saved like a download."""
    from tests.extractors import tiny_models

    tiny_models.clip(path)  # tokenizer, processor and a tiny model, in the real layout
    if tiny:
        return path
    import torch
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig.from_pretrained(path)
    config.vision_config.update(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                     num_attention_heads=12, patch_size=16, image_size=224))
    config.projection_dim = 512
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    return path


def jpegs(n: int) -> list[bytes]:
    """Distinct 1024-px JPEGs (photo content, so the decoder works as on real images)."""
    from PIL import Image, ImageEnhance

    bases = [Image.open(ROOT / "examples/media/photos" / f).convert("RGB").resize((1024, 768))
             for f in ("astronaut.jpg", "coffee.jpg", "chelsea_cat.png")]
    out = []
    for i in range(n):
        img = ImageEnhance.Brightness(bases[i % 3]).enhance(0.7 + 0.6 * (i % 17) / 16)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _decode(args: tuple[bytes, int]) -> np.ndarray:
    data, max_side = args
    return decode_image(data, max_side, "bench.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-side", type=int, default=256, help="preprocess.image.maxSide of the job")
    parser.add_argument("--tiny", action="store_true", help="a tiny tower: a quick check that the script runs")
    args = parser.parse_args()

    import torch

    gpu = torch.cuda.is_available()
    work = Path(tempfile.mkdtemp(prefix="prism-gpu-"))
    spec = ExtractorSpec(name="visual", kind="image-embedding", model=f"file://{clip_model(work / 'clip', args.tiny)}",
                         batch_size=args.batch, resources={"gpu": 1 if gpu else 0})
    extractor = ImageEmbedding(spec)
    extractor.setup()
    data = jpegs(args.images)
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    # Model only: one preprocessed batch on the device, run images/batch times.
    sample = [{"image": _decode((d, args.max_side)), "modality": "image"} for d in data[: args.batch]]
    pixels = extractor._processor(images=[s["image"] for s in sample], return_tensors="pt")
    from prism_pipeline.extractors import hf_models

    inputs = hf_models.inputs_to(pixels, extractor._where)
    with torch.inference_mode():
        extractor._model.get_image_features(**inputs)  # warm-up (kernels, allocator)
        sync()
        started = time.perf_counter()
        for _ in range(max(1, args.images // args.batch)):
            extractor._model.get_image_features(**inputs)
        sync()
    model_only = max(1, args.images // args.batch) * args.batch / (time.perf_counter() - started)

    # Pipeline path: bytes -> decode (process pool) -> extractor (processor + model), overlapped.
    started = time.perf_counter()
    done = 0
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        decoded = pool.map(_decode, [(d, args.max_side) for d in data], chunksize=16)
        batch: list[dict] = []
        for image in decoded:
            batch.append({"image": image, "modality": "image"})
            if len(batch) == args.batch:
                done += len(extractor(batch))
                batch = []
        if batch:
            done += len(extractor(batch))
    sync()
    pipeline = done / (time.perf_counter() - started)
    print(json.dumps({
        "device": torch.cuda.get_device_name(0) if gpu else f"cpu ({os.cpu_count()} cores)",
        "tower": "tiny" if args.tiny else "ViT-B/16", "dtype": str(extractor._model.dtype),
        "images": args.images, "batch": args.batch, "max_side": args.max_side,
        "model_only_img_per_s": round(model_only), "pipeline_img_per_s": round(pipeline),
        "pipeline_over_model_only": round(pipeline / model_only, 3),
    }, indent=2))


if __name__ == "__main__":
    main()

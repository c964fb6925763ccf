"""Many layers of a network on a sample of crops: what the `probes` and `cka` parts read.

`default_layers(model)` spreads ~11 names through the network, all read with the
capture-by-name of `hgpose.models.capture`: the stem, each down level of the (last) hourglass,
its bottleneck (and the AE code of an SHG+AE), each up level, the hourglass's output and the
head (the thesis network's heatmap head; the last stack's prediction of a stacked one).

`pooled_features(...)` runs the network once over a seeded random sample of the analysed
crops (the first --limit N of the split, as the latents) and keeps each layer's output
average-pooled to at most GRID x GRID cells, so that every layer gives a vector of bounded
size: channels x 4 x 4 (4,096 values for a 256-wide layer; a 4x4 bottleneck is kept as it
is). Memory and disk are bounded by the sample, never by the split: crops x sum of the layers'
widths x 4 bytes on disk (4,000 crops x 11 layers x 4,096 = 721 MB for the full-width thesis
network, 1,000 x 11 x 2,048 = 90 MB for the `cpu` preset's), written through memory maps, and
read back one layer (probes) or one minibatch of rows (CKA) at a time.

The cache follows the latents' rules (`hgpose.explain.latents`): one .npy per layer in
CACHE_DIR, named <role>-<split>-<layer>-pooled, valid while its .json key matches (the
checkpoint's SHA-256 and precision, the split, the store's manifest SHA-256, the --limit, the
sampled rows and the grid); the .json is written last, so its presence means "complete".
Layers missing from the cache are computed together in one pass.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from hgpose.errors import HgposeError
from hgpose.io import npy_rows, write_json

GRID = 4              # each layer's output pooled to at most GRID x GRID cells
CACHE_FORMAT = 1


def default_layers(model) -> list[str]:
    """~11 layers from the stem to the head (see the module docstring), in the order they run."""
    from hgpose.models.hourglass import Hourglass

    modules = dict(model.named_modules())
    hourglasses = [name for name, m in modules.items() if isinstance(m, Hourglass)]
    if not hourglasses:
        raise HgposeError(f"{type(model).__name__} has no hourglass: give --probe-layers / --cka-layers by name")
    hg = hourglasses[-1]
    glass = modules[hg]
    names = ["stem"] if "stem" in modules else []
    names += [f"{hg}.down.{i}" for i in range(len(glass.down))]
    names.append(f"{hg}.bottleneck.{len(glass.bottleneck) - 1}")
    if glass.autoencoder is not None and model.latent_layer in modules:
        names.append(model.latent_layer)
    names += [f"{hg}.up.{i}" for i in range(len(glass.up))]
    names.append(hg)
    head = "head" if "head" in modules else f"predictions.{len(getattr(model, 'predictions', [])) - 1}"
    if head in modules:
        names.append(head)
    return names


def sample_rows(n: int, crops: int, seed: int) -> np.ndarray:
    """Sorted rows of a seeded random sample of `crops` of the first n crops (all when fewer)."""
    if crops >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, crops, replace=False))


def pool(output, grid: int = GRID) -> np.ndarray:
    """A layer's output [B, C, H, W] (or [B, D]) -> float32 [B, C * min(grid,H) * min(grid,W)]."""
    import torch.nn.functional as F

    output = output.float()
    if output.dim() == 4:
        size = (min(grid, output.shape[-2]), min(grid, output.shape[-1]))
        output = F.adaptive_avg_pool2d(output, size)
    return output.flatten(1).cpu().numpy()


def _files(cache_dir: Path, role: str, split: str, layer: str) -> dict[str, Path]:
    """The layer's .npy and .json (names by concatenation: a layer name holds dots)."""
    stem = f"{role}-{split}-{layer}-pooled"
    return {ext: cache_dir / f"{stem}.{ext}" for ext in ("npy", "json")}


def _key(checkpoint, store, split: str, limit: int, rows: np.ndarray, layer: str) -> dict:
    return {"format": CACHE_FORMAT, "checkpoint_sha256": checkpoint.sha256, "precision": checkpoint.precision,
            "layer": layer, "split": split, "store_manifest_sha256": store.manifest_sha256, "limit": int(limit),
            "grid": GRID, "rows": len(rows), "rows_sha256": hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest()}


def _cached(files: dict[str, Path], key: dict) -> bool:
    try:
        meta = json.loads(files["json"].read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return meta.get("key") == key and files["npy"].is_file()


def pooled_features(checkpoint, store, split: str, rows: np.ndarray, layers: list[str], cache_dir: Path, *,
                    role: str = "main", limit: int = 0, batch_size: int = 32, device=None,
                    progress: bool = True, skips: bool = True) -> dict[str, np.ndarray]:
    """layer -> float32 [len(rows), D] (a read-only memory map) of the crops `rows` of `split`,
    from the cache or from one pass over the layers it lacks. skips=False: the network with its
    hourglass skips switched off (give it its own `role`)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    keys = {layer: {**_key(checkpoint, store, split, limit, rows, layer), "skips": skips} for layer in layers}
    missing = [layer for layer in layers if not _cached(_files(cache_dir, role, split, layer), keys[layer])]
    if missing:
        _compute(checkpoint, store, split, rows, missing, cache_dir, role, keys, batch_size, device, progress,
                 skips)
    return {layer: np.load(_files(cache_dir, role, split, layer)["npy"], mmap_mode="r") for layer in layers}


def _compute(checkpoint, store, split, rows, layers, cache_dir, role, keys, batch_size, device, progress,
             skips) -> None:
    import torch

    from hgpose.evaluate.split_pass import network_forward
    from hgpose.explain.latents import input_mean
    from hgpose.models import capture, skips_disabled
    from hgpose.progress import bar as progress_bar

    start = time.perf_counter()
    device = device or torch.device("cpu")
    model = checkpoint.model.to(device).eval()
    forward = network_forward(model, input_mean(checkpoint), device, autocast=checkpoint.autocast)
    images = store.split(split).images
    files = {layer: _files(cache_dir, role, split, layer) for layer in layers}
    for f in files.values():
        f["json"].unlink(missing_ok=True)   # from here on incomplete
    bar = progress_bar(total=len(rows), desc=f"layers ({role}, {split})", unit="crop", disable=not progress, leave=False)
    with ExitStack() as stack, torch.no_grad(), capture(model, layers) as outputs:
        if not skips:
            stack.enter_context(skips_disabled(model))
        writers = {layer: stack.enter_context(npy_rows(files[layer]["npy"], len(rows)))
                   for layer in layers}
        for start_row in range(0, len(rows), batch_size):
            chunk = np.arange(start_row, min(start_row + batch_size, len(rows)))
            crops = torch.from_numpy(np.array(images[rows[chunk]]))
            forward(crops, torch.from_numpy(chunk))
            for layer in layers:
                writers[layer](chunk, pool(outputs[layer]))
            bar.update(len(chunk))
    bar.close()
    seconds = round(time.perf_counter() - start, 2)
    for layer in layers:
        write_json(files[layer]["json"],
                   {"key": keys[layer], "checkpoint": str(checkpoint.path), "seconds_all_layers": seconds,
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")})


def check_layers(model, names: list[str], flag: str) -> None:
    """Every name capturable, before any pass: the capture error (with the known names) under `flag`."""
    from hgpose.models.capture import UnknownNameError, capturable, layer_outline

    known = set(capturable(model))
    for name in names:
        if name not in known:
            raise UnknownNameError(f"{flag} {name}: no layer of that name; {layer_outline(model)}")

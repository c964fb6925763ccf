"""The latents store: one pass of the network over a split, kept on disk and reused.

For every crop of the split the pass records
    values     float32 [N, D]   the chosen layer's output, flattened (default: the 3rd
                                bottleneck Residual, 256x4x4 = 4,096 values)
    pck        float32 [N, 3]   per-image thesis PCK with skips: all / visible / limbs
                                (NaN where the image has no counted joint)
    pred       float32 [N,17,3] predicted x, y (crop px, argmax x 4) and heatmap peak
    ids, labelled, visible      COCO ids and the number of labelled (v>0) / visible (v=2) joints

Files, in CACHE_DIR (default REPORT_DIR/latents), named <role>-<split>-<layer>:
    .npy    the values, written through a memory map, so 124,040 x 4,096 (~2 GB) never
            sits in RAM; read back with mmap_mode="r"
    .npz    everything else (small)
    .json   the key and a description; written last, so its presence means "complete"

float32, not float16: PCA accumulates sums of squares over 124k rows and the thesis's
tail components are ~1e-4 of the variance; float16 (11-bit mantissa) would put its rounding
noise at that level. 2 GB on disk is affordable, and float32 feeds BLAS without conversion.
The pass itself runs on the inference core's fast path: in bf16 where the hardware has it
natively (`--precision auto`), which rounds each layer's output to ~3 significant digits --
the leading components and the clusters do not move (LSPET test crops: PC1 0.715 against
0.716 in fp32, the same K, silhouette and cluster sizes; docs/evaluate.md, "Speed"), but read
the far tail of the spectrum from a `--precision fp32` pass.

The cache is valid while the key matches: checkpoint SHA-256, precision, layer, split, the
dataset store's manifest SHA-256 and the crop limit. Anything else (a retrained checkpoint, another
store) rebuilds it in place. Every file goes through a temporary name and a rename.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from hgpose.codecs import ThesisCodec
from hgpose.data.dataset import CropDataset, make_loader
from hgpose.data.store import Store
from hgpose.errors import HgposeError
from hgpose.evaluate.pck import SUBSETS
from hgpose.evaluate.split_pass import network_forward, split_pass
from hgpose.inference.fast import prepare_network
from hgpose.inference.load import load_run
from hgpose.io import atomic_path, file_sha256, npy_rows, write_json
from hgpose.progress import bar as progress_bar
from hgpose.models import skips_disabled
from hgpose.skeleton import JOINTS

CACHE_FORMAT = 1


@dataclass
class Checkpoint:
    """A trained network and where it came from."""

    path: Path
    model: nn.Module
    metadata: dict          # from the weights file: model config, mean_rgb, epoch, metrics
    sha256: str
    mtime: float
    precision: str = "fp32"           # what the forward passes compute in: "bf16" or "fp32"
    autocast: Callable = nullcontext  # its autocast context factory

    @property
    def trained(self) -> np.ndarray:
        """bool [17]: the joints the network was trained on (its weights file's "joints")."""
        from hgpose.explain.accuracy import trained_joints

        return trained_joints(self.metadata)

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "precision": self.precision,
            "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.mtime)),
            "epoch": self.metadata.get("epoch"),
            "preset": self.metadata.get("preset"),
            "model": self.metadata.get("model"),
            "metrics": self.metadata.get("metrics"),
            "joints": [name for name, keep in zip(JOINTS, self.trained) if keep],
        }


@dataclass
class Latents:
    values: np.ndarray      # float32 [N, D], a read-only memory map
    ids: np.ndarray         # int64 [N, 2]: COCO image id, annotation id
    labelled: np.ndarray    # int16 [N]
    visible: np.ndarray     # int16 [N]
    pck: np.ndarray         # float32 [N, 3], columns SUBSETS
    pred: np.ndarray        # float32 [N, 17, 3]
    meta: dict              # the .json: key, shapes, paths, timing
    reused: bool            # True when read from the cache, False when just computed
    present: np.ndarray | None = None  # int16 [N]: joints the crop's source annotates (17 for COCO)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def complete(self) -> np.ndarray:
        """bool [N]: every joint the crop's source annotates is labelled (for COCO: all 17,
        the thesis's subset (ii); for LSP: its 12 body joints)."""
        present = self.present if self.present is not None else np.full(len(self.labelled), self.pred.shape[1])
        return self.labelled == present

    @property
    def fully_annotated(self) -> np.ndarray:
        """Indices of the complete crops (see `complete`): the thesis's subset (ii)."""
        return np.flatnonzero(self.complete)


def load_checkpoint(run: str | Path, which: str | None = None, device: str | torch.device = "cpu",
                    precision: str = "auto") -> Checkpoint:
    """A run's weights by the one best/last rule (`hgpose.runs`), made ready for the fast
    path (`prepare_network`; `precision` auto | bf16 | fp16 | fp32)."""
    loaded = load_run(run, which, device)
    model, autocast, used = prepare_network(loaded.model, device, precision)
    path = loaded.weights
    return Checkpoint(path, model, loaded.metadata, file_sha256(path), path.stat().st_mtime, used, autocast)


@torch.no_grad()
def layer_size(checkpoint: Checkpoint, layer: str, device: str | torch.device = "cpu") -> int:
    """Values per crop of `layer`'s output, from one pass of a blank crop (an unknown layer
    raises the error that lists the known ones)."""
    from hgpose.data.store import CROP_SIZE
    from hgpose.models import capture

    model = checkpoint.model.to(device).eval()
    x = torch.zeros(1, 3, CROP_SIZE, CROP_SIZE, device=device)
    with capture(model, [layer]) as outputs, checkpoint.autocast():
        model(x)
    return int(outputs[layer][0].numel())


def input_mean(checkpoint: Checkpoint) -> torch.Tensor:
    """The mean RGB the network was trained with (a weights file always carries it)."""
    return torch.tensor(checkpoint.metadata["mean_rgb"], dtype=torch.float32)


def _loader(store: Store, split: str, limit: int, batch_size: int, workers: int, device: torch.device):
    dataset = CropDataset(store, split, limit)
    sampler = torch.utils.data.SequentialSampler(dataset)
    return make_loader(dataset, batch_size, sampler, workers, device), len(dataset)


@torch.no_grad()
def forward_pass(
    checkpoint: Checkpoint,
    store: Store,
    split: str,
    *,
    layer: str | None = None,
    skips: bool = True,
    limit: int = 0,
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device = torch.device("cpu"),
    progress: bool = True,
    desc: str = "forward",
):
    """Run the network over a split in order (evaluate's one pass, `split_pass`); yields per
    batch (index array, latent [B, D] float32 numpy or None, pred [B,17,3], pck [B,3]).

    With `layer` the named module's output is captured; `skips=False` runs the hourglass
    skip-connection ablation. Shared by the latents store and the ablation.
    """
    model = checkpoint.model.to(device).eval()
    forward = network_forward(model, input_mean(checkpoint), device, autocast=checkpoint.autocast)
    codec = ThesisCodec()
    loader, n = _loader(store, split, limit, batch_size, workers, device)
    with nullcontext() if skips else skips_disabled(model):
        bar = progress_bar(total=n, desc=desc, unit="crop", disable=not progress, leave=False)
        for batch in split_pass(loader, forward, layer=(model, layer) if layer else None):
            xy, peak = codec.decode_torch(batch.heatmaps)
            latent = batch.layer.flatten(1).float().cpu().numpy() if layer else None
            pred = torch.cat([xy, peak[..., None]], -1).cpu().numpy()
            yield batch.rows.numpy(), latent, pred, batch.pck_table()
            bar.update(len(batch.rows))
        bar.close()


def cache_key(checkpoint: Checkpoint, store: Store, split: str, layer: str, limit: int) -> dict:
    return {
        "format": CACHE_FORMAT,
        "checkpoint_sha256": checkpoint.sha256,
        "precision": checkpoint.precision,
        "layer": layer,
        "split": split,
        "store_manifest_sha256": store.manifest_sha256,
        "limit": int(limit),
    }


def _paths(cache_dir: Path, role: str, split: str, layer: str) -> dict[str, Path]:
    stem = f"{role}-{split}-{layer}"
    return {ext: cache_dir / f"{stem}.{ext}" for ext in ("npy", "npz", "json")}


def load_latents(
    checkpoint: Checkpoint,
    store: Store,
    split: str,
    cache_dir: str | Path,
    *,
    layer: str | None = None,
    role: str = "main",
    limit: int = 0,
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device = torch.device("cpu"),
    progress: bool = True,
) -> Latents:
    """The latents of `split` under `checkpoint`, from the cache or computed (and cached)."""
    layer = layer or checkpoint.model.latent_layer
    cache_dir = Path(cache_dir)
    paths = _paths(cache_dir, role, split, layer)
    key = cache_key(checkpoint, store, split, layer, limit)
    meta = _read_meta(paths["json"])
    if meta is None or meta.get("key") != key or not paths["npy"].is_file() or not paths["npz"].is_file():
        meta = _compute(checkpoint, store, split, layer, limit, key, paths,
                        batch_size, workers, device, progress)
        reused = False
    else:
        reused = True
    values = np.load(paths["npy"], mmap_mode="r")
    with np.load(paths["npz"]) as z:
        extra = {k: z[k] for k in z.files}
    if values.shape[0] != len(extra["ids"]):
        raise HgposeError(f"{paths['npy']}: {values.shape[0]} rows but {len(extra['ids'])} ids; "
                          f"delete {cache_dir} and run again")
    return Latents(values=values, meta=meta, reused=reused, **extra)


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _compute(checkpoint, store: Store, split, layer, limit, key, paths, batch_size, workers, device,
             progress) -> dict:
    start = time.perf_counter()
    paths["json"].unlink(missing_ok=True)  # from here on the cache is incomplete
    crops = store.split(split)
    keypoints = crops.keypoints
    n = min(len(keypoints), limit) if limit > 0 else len(keypoints)
    if n == 0:
        raise HgposeError(f"split {split!r} of {store.path} is empty; choose another --split")
    ids = np.array(crops.ids[:n])
    v = np.array(keypoints[:n, :, 2])
    pred = np.zeros((n, v.shape[1], 3), np.float32)
    pck = np.full((n, len(SUBSETS)), np.nan, np.float32)
    dim = 0
    with npy_rows(paths["npy"], n) as write:
        for index, latent, p, q in forward_pass(
                checkpoint, store, split, layer=layer, limit=limit, batch_size=batch_size,
                workers=workers, device=device, progress=progress, desc=f"latents ({split})"):
            write(index, latent)
            dim = latent.shape[1]
            pred[index], pck[index] = p, q
    with atomic_path(paths["npz"], suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, ids=ids, labelled=(v > 0).sum(1).astype(np.int16),
                 present=crops.joints_present(slice(0, n)).sum(1).astype(np.int16),
                 visible=(v >= 2).sum(1).astype(np.int16), pck=pck, pred=pred)
    meta = {
        "key": key,
        "checkpoint": str(checkpoint.path),
        "checkpoint_mtime": checkpoint.describe()["mtime"],
        "data_dir": str(store.path.resolve()),
        "shape": [n, dim],
        "dtype": "float32",
        "values": paths["npy"].name,
        "seconds": round(time.perf_counter() - start, 2),
        "device": str(device),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json(paths["json"], meta)
    return meta

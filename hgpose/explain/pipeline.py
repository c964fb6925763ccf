"""`hgpose explain`: run the registered parts in order and write explain.json, the figures and
report.html.

    latents (cached) -> pca -> kmeans -> ablation -> saliency -> compare -> factors -> report

Each analysis is one module following the part protocol (`hgpose.explain.protocol`): its
options, flags, run, figures, report fragment and summary lines. `PARTS` registers them, in
run order; this module only loops over it: options, checks, timing and bookkeeping.

REPORT_DIR/
    explain.json          every number, and the figures of each part (paths relative to it)
    report.html           one self-contained page (figures embedded)
    figures/*.png
    kmeans_<subset>.npz   cluster labels of every K (rows, ids), for further analysis
    latents/              the latents cache (unless --cache elsewhere)

Re-running with `--only` recomputes those parts and keeps the others' results, as long as
they were made from the same checkpoint, split, layer and limit; otherwise it starts over.

A call's files are a set (`hgpose.outputs.staged`): figures, .npz files, explain.json and
report.html are written to a staging folder and moved into REPORT_DIR together, explain.json
and report.html last; a call that fails (a full disk, Ctrl-C) leaves REPORT_DIR as it was,
but for the latents cache, which is complete or absent on its own (its .json last) and is
reused by the next call. REPORT_DIR must be new, empty or an earlier explain report; that it
can be written, and that the PCA fits in memory, are checked before any latent is computed.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from hgpose import __version__, thesis
from hgpose.data.store import Store
from hgpose.errors import HgposeError
from hgpose.explain import accuracy
from hgpose.explain.context import Context
from hgpose.explain.options import ExplainOptions
from hgpose.explain.parts import PARTS, default_options, selectable_parts
from hgpose.explain.protocol import require_at_least_one
from hgpose.io import LOCK_NAME, atomic_path, write_json
from hgpose.outputs import Staging, leftover_staging, staged

# The command line imports this module (and so every part) to list the parts' flags: what
# needs torch, scikit-learn or matplotlib is imported where it runs, so `hgpose --help` and
# the other commands start in a fraction of a second.
FORMAT_VERSION = 1


def check_options(o: ExplainOptions) -> None:
    from hgpose.config import PRECISIONS

    selectable = selectable_parts()
    unknown = set(o.only) - set(selectable)
    if unknown:
        raise HgposeError(f"--only {','.join(sorted(unknown))}: unknown part; choose from {','.join(selectable)}")
    require_at_least_one(o, ("batch_size",))
    if o.precision not in PRECISIONS:
        raise HgposeError(f"--precision {o.precision}: choose one of {', '.join(PRECISIONS)}")
    for name in PARTS:
        o.parts[name].check(o)


def check_network(options: ExplainOptions, checkpoint) -> None:
    """The checks of the asked parts that need the network (a joint it was trained on, a layer
    it has): made once the checkpoint is read, before the latents pass, not after it."""
    for name, part in PARTS.items():
        check = getattr(part, "check_network", None)
        if check is not None and options.asks(name):
            check(options, checkpoint)


def explain(run_dir, data_dir, out_dir, options: ExplainOptions | None = None, **changes) -> dict:
    """Run the analysis; returns what is written to REPORT_DIR/explain.json.

        explain("runs/thesis", "data/coco", "reports/thesis-train", split="train")
        explain(run, data, out, ExplainOptions(only=("pca",), limit=10000))
        explain(run, data, out, only="kmeans", k_max=6)    # a part's option by its flat name
    """
    from hgpose.explain import latents as latents_mod
    from hgpose.inference.device import resolve_device

    options = default_options(options).replace(**changes)
    check_options(options)
    out_dir = Path(out_dir)
    check_report_dir(out_dir)
    device = resolve_device(options.device)
    started = time.perf_counter()

    ckpt = latents_mod.load_checkpoint(run_dir, options.checkpoint, device, options.precision)
    check_network(options, ckpt)
    layer = options.layer or ckpt.model.latent_layer
    cache_dir = Path(options.cache_dir) if options.cache_dir else out_dir / "latents"
    store = Store.open(data_dir)
    check_costs(ckpt, store, options, layer, device)
    with staged(out_dir, last=(RESULT_FILE, REPORT_FILE), what="report folder (--out)") as stage:
        t = time.perf_counter()
        lat = latents_mod.load_latents(
            ckpt, store, options.split, cache_dir, layer=layer, limit=options.limit,
            batch_size=options.batch_size, workers=options.workers, device=device, progress=options.progress)
        timings = {"latents": round(time.perf_counter() - t, 2)}

        result = _result_head(out_dir, store, options, ckpt, lat, layer, cache_dir, stage)
        result.setdefault("timings", {}).update(timings)
        split = store.split(options.split)
        ctx = Context(options, store, out_dir, stage / "figures", ckpt, layer, device, split.images,
                      split.keypoints, lat, sections=result, timings=result["timings"],
                      subsets={"all": None, "full": lat.fully_annotated}, write_dir=stage.path)
        # the Run section's guards, recomputed by every call (cheap: the keypoints, no pass)
        result["accuracy"] = accuracy.summary(lat.pred, ctx.labels(), ckpt.trained)
        result["thesis_reference"] = thesis_reference(store, int(lat.values.shape[1]))
        _run_parts(ctx, stage)
        result["timings"]["total"] = round(time.perf_counter() - started, 2)

        write_json(stage / RESULT_FILE, result)
        _write_report(result, stage, out_dir)
    return result


def _write_report(result: dict, stage: Staging, out_dir: Path) -> None:
    from hgpose.explain.report import report_html

    html = report_html(result, [stage.path, out_dir])   # a kept part's figures are in out_dir
    with atomic_path(stage / REPORT_FILE, suffix=".html") as tmp:
        tmp.write_text(html, encoding="utf-8")


# --- before any work: the report folder and the cost ------------------------------------------

RESULT_FILE, REPORT_FILE = "explain.json", "report.html"
# What explain writes in REPORT_DIR besides explain.json and report.html: a folder that holds
# only these is a report whose last call stopped before its explain.json (or a first call that
# stopped after its latents pass).
OWN_NAMES = re.compile(r"latents|figures|kmeans_\w+\.npz|ablation\.npz")


def check_report_dir(out_dir: Path) -> None:
    """REPORT_DIR may be new, empty or an explain report; a folder holding anything else is
    refused in one line, since explain replaces report.html, figures/ and its .npz files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise HgposeError(f"--out {out_dir}: is a file, not a folder; give a folder for the report")
    if not out_dir.is_dir():
        return
    names = sorted(n for n in os.listdir(out_dir) if not leftover_staging(n) and n != LOCK_NAME)
    if RESULT_FILE in names and _own_result(out_dir / RESULT_FILE):
        return
    stranger = next((n for n in names if not OWN_NAMES.fullmatch(n)), None)
    if stranger == RESULT_FILE:
        raise HgposeError(f"--out {out_dir}: holds an explain.json that `hgpose explain` did not write (or that "
                          "cannot be read); hgpose never replaces files it did not write: give a new or empty folder")
    if stranger is not None:
        raise HgposeError(f"--out {out_dir}: holds {stranger} and no explain.json of `hgpose explain`; "
                          "hgpose never replaces files it did not write: give a new or empty folder")


def _own_result(path: Path) -> bool:
    try:
        result = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and {"format_version", "identity"} <= set(result)


PCA_PARTS = ("pca", "kmeans", "compare")   # the parts that fit a PCA (factors uses theirs)


def check_costs(ckpt, store: Store, options: ExplainOptions, layer: str, device) -> None:
    """Refuse, before the latents pass, a PCA that would not fit in memory (`pca.check_memory`:
    the estimate and a --limit that fits), or a silhouette sample whose distance matrix would
    not. The layer's width comes from one blank crop."""
    from hgpose.explain import kmeans as kmeans_mod
    from hgpose.explain import latents as latents_mod
    from hgpose.explain import pca as pca_mod

    if options.only and not set(options.only) & set(PCA_PARTS):
        return
    n = len(store.split(options.split))
    n = min(n, options.limit) if options.limit else n
    if n < pca_mod.MIN_ROWS:
        return
    pca_mod.check_memory(n, latents_mod.layer_size(ckpt, layer, device), f"layer {layer}")
    if options.asks("kmeans"):
        kmeans_mod.check_silhouette_memory(n, options.parts["kmeans"].silhouette_sample)


def _result_head(out_dir: Path, store: Store, options: ExplainOptions, ckpt, lat, layer: str, cache_dir: Path,
                 stage: Staging) -> dict:
    """The previous results that stay valid (same checkpoint, split, layer, limit), with this
    call's description of the run on top."""
    identity = {"checkpoint_sha256": ckpt.sha256, "precision": ckpt.precision,
                "split": options.split, "layer": layer,
                "limit": options.limit, "data_dir": str(store.path.resolve())}
    result = _previous(out_dir, identity, stage)
    result.update({
        "format_version": FORMAT_VERSION,
        "hgpose": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "identity": identity,
        "checkpoint": ckpt.describe(),
        "data": _data_summary(store, options, lat),
        "layer": {"name": layer, "dim": int(lat.values.shape[1])},
        "latents": {**lat.meta, "reused": lat.reused, "path": str(cache_dir)},
        "options": options.flat(),
    })
    return result


def _run_parts(ctx: Context, stage: Staging) -> None:
    """Each part that wants to run, in order: its old section (and figures, once the new set
    is in place) dropped, its new one and its time recorded. A part that returns None leaves
    no section."""
    for name, part in PARTS.items():
        if not part.wanted(ctx):
            continue
        _forget(stage, ctx.sections.pop(name, None))
        started = time.perf_counter()
        section = part.run(ctx)
        if section is not None:
            ctx.sections[name] = section
            ctx.timings[name] = round(time.perf_counter() - started, 2)


# --- bookkeeping -----------------------------------------------------------------------------

def _previous(out_dir: Path, identity: dict, stage: Staging) -> dict:
    """The previous explain.json's results if made from the same checkpoint/split/layer/limit
    (else its files are forgotten: deleted when the new set is in place)."""
    try:
        previous = json.loads((out_dir / RESULT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if not isinstance(previous, dict):
        return {}
    if previous.get("format_version") != FORMAT_VERSION or previous.get("identity") != identity:
        for part in PARTS:
            _forget(stage, previous.get(part))
        return {}
    return previous


def _forget(stage: Staging, section: dict | None) -> None:
    """The files of a section that is being replaced: deleted once the new set is in place."""
    for rel in _file_paths(section):
        stage.forget(rel)


def _file_paths(obj) -> list[str]:
    """Every file a nested section names (figures/*.png, and its .npz files), relative."""
    found = []
    if isinstance(obj, dict):
        for value in obj.values():
            found += _file_paths(value)
    elif isinstance(obj, list):
        for value in obj:
            found += _file_paths(value)
    elif isinstance(obj, str) and (re.fullmatch(r"figures/[\w.-]+\.png", obj) or re.fullmatch(r"[\w.-]+\.npz", obj)):
        found.append(obj)
    return found


def thesis_reference(store: Store, dim: int) -> dict:
    """explain.json's "thesis_reference": what the thesis's numbers are, and whether this
    call's numbers compare with them -- its PCK (the same data) and its latent's figures (the
    same data and a latent of the thesis's size) -- with the reason when not."""
    kinds = thesis.data_kinds(store.sources)
    data, latent = thesis.data_mismatch(kinds), thesis.latent_mismatch(kinds, dim)
    return {"label": thesis.LABEL, "data": kinds,
            "pck": {"comparable": data is None, "why_not": data},
            "latent": {"comparable": latent is None, "why_not": latent}}


def _data_summary(store: Store, options: ExplainOptions, lat) -> dict:
    return {
        "dir": str(store.path.resolve()),
        "split": options.split,
        "crops": len(lat),
        "limit": options.limit,
        "fully_annotated": int(len(lat.fully_annotated)),
        "mean_labelled": float(lat.labelled.mean()),
        "mean_visible": float(lat.visible.mean()),
    }


def format_summary(result: dict, out_dir) -> str:
    """A few lines for the terminal: what was analysed, each part's headline numbers, where to look."""
    d = result["data"]
    lines = [f"explained {result['checkpoint']['path']} on {d['split']}: {d['crops']:,} crops "
             f"({d['fully_annotated']:,} fully annotated), latent {result['layer']['name']} "
             f"({result['layer']['dim']:,} values{', cached' if result['latents'].get('reused') else ''})"]
    if "accuracy" in result:
        lines.append(accuracy.summary_line(result["accuracy"]))
    for name, part in PARTS.items():
        if name in result:
            lines += part.summary_lines(result[name], result)
    lines.append(f"report: {Path(out_dir) / 'report.html'} ({result['timings']['total']:.0f} s)")
    return "\n".join(lines)

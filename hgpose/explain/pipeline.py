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
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hgpose import __version__
from hgpose.data.store import Store
from hgpose.errors import HgposeError
from hgpose.explain.context import Context
from hgpose.explain.options import ExplainOptions
from hgpose.explain.parts import PARTS, default_options, selectable_parts
from hgpose.explain.protocol import require_at_least_one
from hgpose.io import write_json

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
    if out_dir.exists() and not out_dir.is_dir():
        raise HgposeError(f"--out {out_dir}: is a file, not a folder; give a folder for the report")
    device = resolve_device(options.device)
    started = time.perf_counter()

    ckpt = latents_mod.load_checkpoint(run_dir, options.checkpoint, device, options.precision)
    layer = options.layer or ckpt.model.latent_layer
    cache_dir = Path(options.cache_dir) if options.cache_dir else out_dir / "latents"
    store = Store.open(data_dir)
    t = time.perf_counter()
    lat = latents_mod.load_latents(
        ckpt, store, options.split, cache_dir, layer=layer, limit=options.limit,
        batch_size=options.batch_size, workers=options.workers, device=device, progress=options.progress)
    timings = {"latents": round(time.perf_counter() - t, 2)}

    result = _result_head(out_dir, store, options, ckpt, lat, layer, cache_dir)
    result.setdefault("timings", {}).update(timings)
    split = store.split(options.split)
    ctx = Context(options, store, out_dir, out_dir / "figures", ckpt, layer, device, split.images,
                  split.keypoints, lat, sections=result, timings=result["timings"],
                  subsets={"all": None, "full": lat.fully_annotated})
    _run_parts(ctx)
    result["timings"]["total"] = round(time.perf_counter() - started, 2)

    write_json(out_dir / "explain.json", result)
    from hgpose.explain.report import render

    render(out_dir)
    return result


def _result_head(out_dir: Path, store: Store, options: ExplainOptions, ckpt, lat, layer: str, cache_dir: Path) -> dict:
    """The previous results that stay valid (same checkpoint, split, layer, limit), with this
    call's description of the run on top."""
    identity = {"checkpoint_sha256": ckpt.sha256, "precision": ckpt.precision,
                "split": options.split, "layer": layer,
                "limit": options.limit, "data_dir": str(store.path.resolve())}
    result = _previous(out_dir, identity)
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


def _run_parts(ctx: Context) -> None:
    """Each part that wants to run, in order: its old section (and figures) dropped, its new
    one and its time recorded. A part that returns None leaves no section."""
    for name, part in PARTS.items():
        if not part.wanted(ctx):
            continue
        _forget(ctx.out_dir, ctx.sections.pop(name, None))
        started = time.perf_counter()
        section = part.run(ctx)
        if section is not None:
            ctx.sections[name] = section
            ctx.timings[name] = round(time.perf_counter() - started, 2)


# --- bookkeeping -----------------------------------------------------------------------------

def _previous(out_dir: Path, identity: dict) -> dict:
    """The previous explain.json's results if made from the same checkpoint/split/layer/limit."""
    try:
        previous = json.loads((out_dir / "explain.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if previous.get("format_version") != FORMAT_VERSION or previous.get("identity") != identity:
        for part in PARTS:
            _forget(out_dir, previous.get(part))
        return {}
    return previous


def _forget(out_dir: Path, section: dict | None) -> None:
    """Delete the figure files of a section that is being replaced."""
    for rel in _figure_paths(section):
        (out_dir / rel).unlink(missing_ok=True)


def _figure_paths(obj) -> list[str]:
    """Every figure path (relative, under figures/) found in a nested section."""
    found = []
    if isinstance(obj, dict):
        for value in obj.values():
            found += _figure_paths(value)
    elif isinstance(obj, list):
        for value in obj:
            found += _figure_paths(value)
    elif isinstance(obj, str) and obj.startswith("figures/") and obj.endswith(".png"):
        found.append(obj)
    return found


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
    for name, part in PARTS.items():
        if name in result:
            lines += part.summary_lines(result[name], result)
    lines.append(f"report: {Path(out_dir) / 'report.html'} ({result['timings']['total']:.0f} s)")
    return "\n".join(lines)

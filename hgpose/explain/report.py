"""report.html: every number and figure of explain.json on one self-contained page.

Figures are embedded as base64 PNG data URIs and the styles are inline, so the file opens
from disk (or an e-mail attachment) with no server, no network and no script. The page is
templates/report.html.j2 with, for each registered part whose section explain.json holds, that
part's own fragment (its TEMPLATE), in the registry's order.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from jinja2 import (ChoiceLoader, Environment, FileSystemLoader, FunctionLoader, StrictUndefined,
                    select_autoescape)

from hgpose import thesis
from hgpose.errors import HgposeError
from hgpose.explain.pca import SUBSET_LABELS
from hgpose.explain.parts import PARTS
from hgpose.io import atomic_path

TEMPLATES = Path(__file__).parent / "templates"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FRAGMENTS = "parts/{}.html.j2"   # `{% include "parts/<name>.html.j2" %}` is that part's TEMPLATE


def _fragment(name: str):
    """The loader of part fragments: parts/<name>.html.j2 -> the registered part's TEMPLATE file
    (wherever it lies; the .html.j2 name keeps the fragment autoescaped like the page)."""
    part = name.removeprefix("parts/").removesuffix(".html.j2")
    if name != FRAGMENTS.format(part) or part not in PARTS:
        return None
    path = Path(PARTS[part].TEMPLATE)
    return path.read_text(encoding="utf-8"), str(path), lambda: False


def _environment() -> Environment:
    loader = ChoiceLoader([FileSystemLoader(TEMPLATES), FunctionLoader(_fragment)])
    env = Environment(loader=loader, autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["sig"] = lambda v: "–" if v is None else f"{v:.3g}"
    env.filters["pct"] = lambda v, digits=1: "–" if v is None else f"{100 * v:.{digits}f} %"
    return env


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _figures(obj, folders: list[Path], found: dict) -> dict:
    """Data URIs of every figure referenced in explain.json (paths under figures/), each
    read from the first of `folders` that holds it."""
    if isinstance(obj, dict):
        for value in obj.values():
            _figures(value, folders, found)
    elif isinstance(obj, list):
        for value in obj:
            _figures(value, folders, found)
    elif isinstance(obj, str) and obj.startswith("figures/") and obj.endswith(".png"):
        path = next((folder / obj for folder in folders if (folder / obj).is_file()), folders[-1] / obj)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise HgposeError(f"{path}: cannot be read ({e.strerror or e}), and explain.json shows it; "
                              "run `hgpose explain` again") from None
        if not data.startswith(PNG_MAGIC):
            raise HgposeError(f"{path}: not a PNG file; run `hgpose explain` again")
        found[obj] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return found


# What an explain.json written before these entries existed is rendered with: no accuracy
# (the Run section says so), joints not recorded, and no thesis number beside its results,
# since it does not say what data they come from.
OLDER = "this explain.json does not record its data's format (an older hgpose wrote it); run hgpose explain again"


def _with_defaults(result: dict) -> dict:
    """`result` with the entries the page needs that an older explain.json lacks."""
    result = dict(result)
    result.setdefault("accuracy", None)
    result["checkpoint"] = {"joints": None, **result.get("checkpoint", {})}
    result.setdefault("thesis_reference", {"label": thesis.LABEL, "data": [],
                                           "pck": {"comparable": False, "why_not": OLDER},
                                           "latent": {"comparable": False, "why_not": OLDER}})
    return result


def report_html(result: dict, folders: list[Path]) -> str:
    """report.html's text for explain.json's content `result`, its figures read from the
    first of `folders` holding each (a call's staging folder, then the report folder)."""
    result = _with_defaults(result)
    images = _figures(result, [Path(f) for f in folders], {})
    present = {name: part for name, part in PARTS.items() if name in result}
    return _environment().get_template("report.html.j2").render(
        r=result, img=images, labels=SUBSET_LABELS, thesis=thesis, parts=present)


def render(out_dir: str | Path) -> Path:
    """Write REPORT_DIR/report.html from REPORT_DIR/explain.json and its figures."""
    out_dir = Path(out_dir)
    path = out_dir / "explain.json"
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise HgposeError(f"{path}: not found; run `hgpose explain` first") from None
    html = report_html(result, [out_dir])
    target = out_dir / "report.html"
    with atomic_path(target, suffix=".html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    return target

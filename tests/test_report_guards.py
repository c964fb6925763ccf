"""A report that guards against misreading: `hgpose explain` says how well the network finds
joints and warns when that is near what a network that learned nothing scores; thesis numbers
appear only labelled and where they compare (and evaluate's thesis column only for COCO);
saliency and every per-joint view skip the joints the network was never trained on; --limit
caps saliency; PC walks show a crop once per run of steps; no legend covers a plot; saliency
pictures carry a colour scale; each caption describes its own figure.

Two real reports are made once: on synthetic single people (hgpose.synth, COCO layout), a
network trained for 6 epochs (about a minute and a half of CPU) explained with every part,
and the same network untrained; and an LSP-format store with a network whose weights file
says it learned the 12 LSP joints.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import make_run, make_store
from hgpose.cli import main
from hgpose.explain import accuracy, figures, pca, saliency
from hgpose.skeleton import JOINTS
from hgpose.thesis import LABEL

FACE = ["nose", "left_eye", "right_eye", "left_ear", "right_ear"]
BODY = [j for j in JOINTS if j not in FACE]
# What the report says only where it shows a thesis number: its labelled sentences ("The thesis
# (COCO 2017; ...)"), the thesis's rows and their figures (checked as words, not as bare
# numbers, which this run's own results could hold by chance).
THESIS_WORDS = ("The thesis (", "thesis SHG", "found K =", "124,040", "mean per-image PCK 0.", "needs 541")


# --- the accuracy and the prior level: values ---------------------------------------------------

def crops_with_cells(cells: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Keypoints [N, 17, 3] in crop pixels whose thesis-codec cells are `cells` [N, 17, 2]."""
    keypoints = np.zeros(cells.shape[:2] + (3,), np.float32)
    keypoints[..., :2] = cells * 4 + 1.5
    keypoints[..., 2] = v
    return keypoints


def test_the_prior_level_is_every_joint_at_its_median_cell():
    """Five crops; joint 0 at cells x = 10, 10, 11, 30, 40 (median 11), every other joint at
    cell (20, 20) but in crop 4 at (50, 50). The constant skeleton at the medians is right
    within 3.2 cells: joint 0 in crops 0-2, every other joint in crops 0-3."""
    cells = np.full((5, 17, 2), 20.0)
    cells[:, 0, 0] = [10, 10, 11, 30, 40]
    cells[:, 0, 1] = 20
    cells[4, 1:] = 50
    keypoints = crops_with_cells(cells, np.full((5, 17), 2))
    np.testing.assert_array_equal(accuracy.prior_cells(keypoints)[:2], [[11, 20], [20, 20]])
    pck = accuracy.per_image_pck(accuracy.prior_cells(keypoints), keypoints, np.ones(17, bool))
    np.testing.assert_allclose(pck[:, 0], [1, 1, 1, 16 / 17, 0])
    np.testing.assert_allclose(pck[:, 2], [1, 1, 1, 1, 0])     # joint 0 is no limb


def test_only_labelled_joints_the_network_was_trained_on_count():
    cells = np.full((2, 17, 2), 30.0)
    keypoints = crops_with_cells(cells, np.full((2, 17), 2))
    keypoints[1, 5:, 2] = 0                          # crop 1: only the face labelled
    wrong_face = cells.copy()
    wrong_face[:, :5] += 10                          # every face joint 10 cells off
    trained = np.isin(JOINTS, BODY)
    pck = accuracy.per_image_pck(wrong_face, keypoints, trained)
    assert pck[0, 0] == 1.0                          # the face does not count
    assert np.isnan(pck[1]).all()                    # nothing left to count in crop 1
    assert accuracy.per_image_pck(wrong_face, keypoints, np.ones(17, bool))[0, 0] == pytest.approx(12 / 17)


def test_near_is_finding_less_than_a_tenth_of_what_the_prior_misses():
    """Prior level 0.5 (joints 0-7 at the median, 8-15 off it, 16 unlabelled; 16 counted):
    a network is near it below 0.5 + 0.1 x 0.5 = 0.55."""
    n = 20
    cells = np.full((n, 17, 2), 30.0)
    cells[:, 8:] = np.where(np.arange(n)[:, None, None] % 2, 10.0, 50.0)   # no median cell is right
    v = np.full((n, 17), 2)
    v[:, 16] = 0
    keypoints = crops_with_cells(cells, v)
    truth = np.array(cells)

    def network(right_per_crop: int) -> np.ndarray:
        pred = truth + 20
        pred[:, :right_per_crop] = truth[:, :right_per_crop]
        return pred * 4 + 1.5

    s = accuracy.summary(network(8), keypoints, np.ones(17, bool))   # 8 of 16: 0.5
    assert s["prior"]["all"] == pytest.approx(0.5) and s["warn_below"] == pytest.approx(0.55)
    assert s["network"]["all"] == pytest.approx(0.5) and s["near_prior"]
    s = accuracy.summary(network(9), keypoints, np.ones(17, bool))   # 9 of 16: 0.5625
    assert s["network"]["all"] == pytest.approx(0.5625) and not s["near_prior"]


# --- two real reports: a trained and an untrained network on synthetic people -------------------

@pytest.fixture(scope="module")
def people(synthetic_people, tmp_path_factory):
    """The session's synthetic people and the reduced-width thesis network trained on them
    (conftest: train-split thesis PCK ~0.4 against a prior level ~0.15), and the same network
    untrained; this module's reports go to a folder of its own."""
    root = tmp_path_factory.mktemp("people")
    return {"root": root, "store": synthetic_people / "store", "trained": synthetic_people / "run",
            "untrained": make_run(root / "untrained", features=16)}


def untrained_ae(root: Path) -> Path:
    """An SHG+AE network of the same width (`--compare`)."""
    from hgpose.config import ModelConfig
    from hgpose.models import ThesisNetwork
    from hgpose.runs.weights import save_weights, weights_metadata

    torch.manual_seed(0)
    save_weights(root / "checkpoints" / "best.safetensors", ThesisNetwork(features=16, autoencoder=True),
                 weights_metadata(ModelConfig(name="thesis", features=16, autoencoder=True), [0.5] * 3, 0, {},
                                  "thesis-ae"))
    return root


def capture_figures():
    """A monkeypatched `figures.save` that keeps every figure it writes: name -> Figure."""
    saved = {}
    real = figures.save

    def save(fig, path):
        out = real(fig, path)
        saved[Path(path).name] = fig
        return out

    return saved, save


@pytest.fixture(scope="module")
def trained_report(people):
    """`explain` of the trained network with every part (and --compare, and the synthetic
    factors), each figure kept as drawn."""
    from hgpose.explain import explain

    saved, save = capture_figures()
    out = people["root"] / "report"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "save", save)
        result = explain(people["trained"], people["store"], out, compare=str(untrained_ae(people["root"] / "ae")),
                         k_max=4, n_init=2, nearest=3, scatter_points=30, saliency_samples=1,
                         saliency_joints=("nose", "left_wrist", "right_knee"), occlusion_patch=64,
                         occlusion_stride=32, saliency_limit=2, ig_steps=4, sanity_crops=1, sanity_steps=2,
                         progress=False)
    return {"out": out, "result": result, "figures": saved, "html": (out / "report.html").read_text()}


def test_the_report_warns_on_an_untrained_network_and_not_on_a_trained_one(people, trained_report, capsys):
    out = people["root"] / "untrained-report"
    argv = ["explain", str(people["untrained"]), "--data", str(people["store"]), "--out", str(out),
            "--only", "pca", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    untrained = json.loads((out / "explain.json").read_text())["accuracy"]
    assert untrained["near_prior"] and untrained["network"]["all"] < untrained["warn_below"]
    assert ("  warning: this network is near that level (below "
            f"{untrained['warn_below']:.3f}): read the analysis as that of a network that has not learned "
            "to find people") in printed
    page = unescape((out / "report.html").read_text())
    warning = re.search(r'<div class="warning" id="warning">(.*?)</div>', page, re.S)
    assert warning and warning.group(1).startswith("<b>This network has not learned to find people.</b>")
    assert f"it scores {untrained['network']['all']:.3f} thesis PCK" in warning.group(1)
    # the box comes first: before the navigation and every section
    assert page.index('id="warning"') < page.index("<nav>")

    trained = trained_report["result"]["accuracy"]
    assert not trained["near_prior"] and trained["network"]["all"] > trained["warn_below"] + 0.1
    assert trained["prior"] == untrained["prior"]          # the same crops, the same reference
    page = unescape(trained_report["html"])
    assert 'id="warning"' not in page
    assert f"this network is clear of it (the report warns below {trained['warn_below']:.3f})" in page


def test_the_run_section_shows_the_accuracy_beside_what_learning_nothing_scores(trained_report):
    """The network's numbers are those of the latents pass (every joint trained here), the
    prior level is recomputed from the keypoints, and the page names the metric."""
    out, result = trained_report["out"], trained_report["result"]
    a = result["accuracy"]
    cache = np.load(next((out / "latents").glob("main-train-*.npz")))
    assert a["network"]["all"] == pytest.approx(float(np.nanmean(cache["pck"][:, 0])), abs=1e-6)
    assert a["network"]["limbs"] == pytest.approx(float(np.nanmean(cache["pck"][:, 2])), abs=1e-6)
    assert a["crops"] == result["data"]["crops"] and a["joints"] == list(JOINTS)
    page = unescape(trained_report["html"])
    assert (f'<th class="l">accuracy on these crops</th><td class="l"><b>{a["network"]["all"]:.3f}</b> thesis PCK '
            f'(visible joints {a["network"]["visible"]:.3f}, limbs {a["network"]["limbs"]:.3f})') in page
    assert (f'<th class="l">learned nothing</th><td class="l">{a["prior"]["all"]:.3f} thesis PCK on the same '
            "crops (every joint at its median cell over these crops, the image unseen)") in page
    assert f"Metric: {accuracy.METRIC}." in page


def test_synthetic_people_are_not_coco_to_the_thesis(trained_report):
    """The synthetic store is COCO-layout, but its people are drawn: no thesis number."""
    ref = trained_report["result"]["thesis_reference"]
    why = "the thesis measured COCO and this data is synthetic people (hgpose synth)"
    assert ref["data"] == ["synthetic"] and ref["pck"]["why_not"] == why
    page = unescape(re.sub(r'src="data:[^"]*"', "", trained_report["html"]))
    assert [w for w in THESIS_WORDS if w in page] == []
    assert f"The thesis's rows are not set beside these: {why}." in page


def test_the_thesis_latent_figures_compare_only_on_coco_with_its_latent_size():
    from hgpose import thesis

    assert thesis.latent_mismatch(["coco"], 4096) is None and thesis.data_mismatch(["coco", "coco"]) is None
    assert thesis.latent_mismatch(["coco"], 512) == (
        "the thesis's latent has 4,096 values and this one 512; shares of variance, component counts, K and "
        "silhouettes change with the latent's size")
    assert thesis.latent_mismatch(["lsp"], 4096) == "the thesis measured COCO and this data is in the lsp format"
    assert thesis.latent_mismatch(["coco"], 50, thesis.AE_CODE_DIM) is None


# --- legends, colour scales and captions, on every figure of the trained report ------------------

def _renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def legends_over_plots(fig) -> list[str]:
    """Each legend of the figure that overlaps an axes (a plot or a colour bar), as text."""
    renderer = _renderer(fig)
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    found = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.axison and box.overlaps(ax.get_window_extent(renderer)):
                found.append(f"legend {[t.get_text() for t in legend.get_texts()]} over {ax.get_title()!r}")
    return found


def test_no_legend_covers_a_plot(trained_report):
    with_legends = [name for name, fig in trained_report["figures"].items()
                    if fig.legends or any(ax.get_legend() for ax in fig.axes)]
    assert {"pca_variance.png", "kmeans_silhouette.png", "ablation_histogram.png",
            "compare_variance.png"} <= set(with_legends)
    for name in with_legends:
        assert legends_over_plots(trained_report["figures"][name]) == [], name


def test_the_check_sees_a_legend_inside_a_plot():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="a curve")
    ax.legend(loc="center")
    assert len(legends_over_plots(fig)) == 1


def test_saliency_pictures_carry_their_colour_scale(trained_report):
    shown = [name for name in trained_report["figures"] if name.startswith("saliency_")]
    assert shown
    for name in shown:
        bars = [ax for ax in trained_report["figures"][name].axes if ax.get_label() == "<colorbar>"]
        assert len(bars) == 1, name
        assert bars[0].get_ylabel() == saliency.SCALE and bars[0].get_ylim() == (0.0, 1.0)
    # the overlay's colours are the bar's: 0 -> the colour map's bottom, the maximum -> its top
    from matplotlib import colormaps

    crop = np.zeros((4, 4, 3), np.uint8)
    tile, peak = saliency.saliency_tile(crop, np.array([[0, 1, 2, 4]] * 4, np.float32), alpha=1.0)
    assert peak == 4.0
    jet = colormaps[saliency.COLOURS]
    np.testing.assert_allclose(tile[0, 0], np.array(jet(0.0)[:3]) * 255, atol=1)
    np.testing.assert_allclose(tile[0, 3], np.array(jet(1.0)[:3]) * 255, atol=1)


def figure_keys(fig) -> list[str]:
    """What a figure function draws, in its own words: the head of its title (up to the first
    ",", ":" or " (") and the axis labels of every plot that is not a picture (a colour bar's
    included), each without its parenthesis."""
    keys = []
    title = fig.get_suptitle()
    if title:
        keys.append(re.split(r",|:| \(", title)[0].strip())
    for ax in fig.axes:
        if ax.images:
            continue
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            label = re.sub(r"\s*\(.*?\)", "", label).strip()
            if label:
                keys.append(label)
    return keys


def missing_from(caption: str, keys: list[str]) -> list[str]:
    """The keys a caption does not mention (case-insensitive, as whole words)."""
    return [k for k in keys if not re.search(r"(?<!\w)" + re.escape(k) + r"(?!\w)", caption, re.I)]


def captions(page: str, folder: Path) -> dict[str, str]:
    """figure file name -> its caption in the report, found through the embedded picture."""
    by_uri = {"data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii"): p.name
              for p in (folder / "figures").glob("*.png")}
    found = {}
    for uri, caption in re.findall(r'<figure><img src="(data:[^"]+)" alt="[^"]*">\s*<figcaption>(.*?)</figcaption>',
                                   page, re.S):
        found[by_uri[uri]] = unescape(re.sub(r"<[^>]+>", "", caption))
    return found


def test_every_caption_describes_its_own_figure(trained_report):
    drawn = trained_report["figures"]
    written = captions(trained_report["html"], trained_report["out"])
    assert set(written) == set(drawn)                      # every figure shown, each with a caption
    kinds = {re.sub(r"_?(pc)?\d+", "", name) for name in drawn}
    assert {"pca_variance.png", "pca_walk_all.png", "kmeans_silhouette.png", "kmeans_all_nearest.png",
            "kmeans_all_scatter.png", "ablation_histogram.png", "saliency.png",
            "compare_variance.png", "factors.png"} <= kinds
    for name, fig in drawn.items():
        keys = figure_keys(fig)
        assert keys, name
        assert missing_from(written[name], keys) == [], (name, written[name])


def test_the_ablation_skeletons_caption_describes_its_figure(trained_report, tmp_path):
    """The one figure drawn only when some crop is fully right: drawn here for crop 0 and put
    in a copy of the report, whose caption is then read against it."""
    from hgpose.explain import ablation
    from hgpose.explain.report import render

    report = shutil.copytree(trained_report["out"], tmp_path / "report")
    result = json.loads((report / "explain.json").read_text())
    store = np.load(next((report / "latents").glob("main-train-*.npz")))
    images = np.load(Path(result["data"]["dir"]) / "train" / "images.npy", mmap_mode="r")
    keypoints = np.load(Path(result["data"]["dir"]) / "train" / "keypoints.npy", mmap_mode="r")
    fig = ablation.skeletons_figure(images, keypoints, np.array([0]), store["pred"], store["pred"],
                                    store["pck"], store["pck"], np.ones(17, bool))
    figures.save(fig, report / "figures" / "ablation_skeletons.png")
    result["ablation"]["figures"]["skeletons"] = "figures/ablation_skeletons.png"
    (report / "explain.json").write_text(json.dumps(result))
    written = captions(render(report).read_text(), report)
    assert missing_from(written["ablation_skeletons.png"], figure_keys(fig)) == []


def test_a_caption_of_another_figure_is_caught(trained_report):
    written = captions(trained_report["html"], trained_report["out"])
    drawn = trained_report["figures"]
    assert missing_from(written["pca_variance.png"], figure_keys(drawn["kmeans_silhouette.png"]))
    assert missing_from(written["kmeans_all_nearest.png"], figure_keys(drawn["kmeans_all_scatter.png"]))
    factors = drawn["factors.png"]
    assert missing_from("Left: the crops on PC1/PC2 coloured by posture family. Right: the numeric factor "
                        "that correlates most with a top component.", figure_keys(factors))


# --- PC walks ------------------------------------------------------------------------------------

def test_a_run_of_steps_won_by_one_crop_is_one_tile():
    assert pca.walk_runs([5, 5, 5, 7, 7, 5, 9]) == [(5, [-3, -2, -1]), (7, [0, 1]), (5, [2]), (9, [3])]
    assert pca.walk_runs([4] * 7) == [(4, [-3, -2, -1, 0, 1, 2, 3])]
    assert pca.steps_name([-3, -2, -1]) == "-3√λ … -1√λ" and pca.steps_name([0]) == "mean"


def test_each_walk_shows_its_crops_once_and_counts_them(trained_report):
    result, drawn = trained_report["result"], trained_report["figures"]
    for s in result["pca"]["subsets"].values():
        for walk in s["walks"]:
            assert [step for tile in walk["tiles"] for step in tile["steps"]] == walk["steps"]
            assert [t["row"] for t in walk["tiles"]] == [r for i, r in enumerate(walk["rows"])
                                                         if i == 0 or walk["rows"][i - 1] != r]
            assert walk["distinct"] == len(set(walk["rows"]))
            fig = drawn[Path(walk["figure"]).name]
            assert sum(bool(ax.images) for ax in fig.axes) == len(walk["tiles"]), walk["figure"]
            titles = [ax.get_title() for ax in fig.axes if ax.images]
            assert [t.split("\n")[0] for t in titles] == [pca.steps_name(t["steps"]) for t in walk["tiles"]]
    assert any(len(w["tiles"]) < 7 for s in result["pca"]["subsets"].values() for w in s["walks"])


# --- an LSP network on an LSP store: no thesis number, no face ---------------------------------

def lsp_store(root: Path) -> Path:
    """A small store whose one source is LSP-format (its 12 body joints)."""
    from hgpose.io import save_npy

    store = make_store(root, 24, 8, 4, first_fully_annotated=True)
    for split in ("train", "val", "test"):            # an LSP person has no face labelled
        keypoints = np.load(store / split / "keypoints.npy")
        keypoints[:, :5] = 0
        save_npy(store / split / "keypoints.npy", keypoints)
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["sources"][0].update(name="lspet", format="lsp", joints=BODY)
    (store / "manifest.json").write_text(json.dumps(manifest))
    return store


def lsp_run(run_dir: Path) -> Path:
    """An (untrained) network whose weights file says it learned the 12 LSP joints."""
    from hgpose import config as cfg
    from hgpose.models import build_model
    from hgpose.runs.weights import save_weights, weights_metadata

    config = cfg.resolve("thesis", ["model.features=8"])
    torch.manual_seed(0)
    meta = weights_metadata(config.model, [0.4] * 3, 1, {}, config.preset, joints=BODY)
    save_weights(run_dir / "checkpoints" / "best.safetensors", build_model(config.model), meta)
    return run_dir


LIMIT, PATCH, STRIDE, IG_STEPS = 20, 128, 64, 4


@pytest.fixture(scope="module")
def lsp_report(tmp_path_factory):
    from hgpose.explain import explain

    root = tmp_path_factory.mktemp("lsp")
    store, run = lsp_store(root / "store"), lsp_run(root / "run")
    saved, save = capture_figures()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "save", save)
        result = explain(run, store, root / "report", limit=LIMIT, k_max=3, n_init=1, nearest=2, scatter_points=4,
                         saliency_samples=2, occlusion_patch=PATCH, occlusion_stride=STRIDE, ig_steps=IG_STEPS,
                         saliency_limit=2, sanity_crops=0, progress=False)
    return {"root": root, "store": store, "run": run, "result": result, "figures": saved,
            "html": (root / "report" / "report.html").read_text()}


def test_thesis_numbers_stay_out_of_a_report_on_lsp_data_and_it_says_why(lsp_report):
    ref = lsp_report["result"]["thesis_reference"]
    why = "the thesis measured COCO and this data is in the lsp format"
    assert ref["data"] == ["lsp"] and ref["label"] == LABEL
    assert ref["pck"] == {"comparable": False, "why_not": why}
    assert ref["latent"] == {"comparable": False, "why_not": why}
    page = unescape(re.sub(r'src="data:[^"]*"', "", lsp_report["html"]))
    assert [w for w in THESIS_WORDS if w in page] == []
    for what in ("Its PCK is not shown", "The thesis's PCA figures are not set beside these",
                 "The thesis's K and silhouettes are not set beside these",
                 "The thesis's ablation means are not set beside these"):
        assert f"{what}: {why}." in page, what
    assert f"always as the thesis's ({LABEL})" in page
    for name, fig in lsp_report["figures"].items():     # nor in the figures' titles
        titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
        assert not [t for t in titles if "thesis" in t.lower()], name


def test_per_joint_views_skip_the_joints_the_network_never_learned(lsp_report):
    s = lsp_report["result"]["saliency"]
    assert s["joints"] == BODY and s["untrained_joints"] == FACE
    assert set(s["mean_locality"]["occlusion"]) == set(BODY)
    assert all(len(sample["occlusion_locality"]) == len(BODY) for sample in s["samples"])
    assert lsp_report["result"]["accuracy"]["joints"] == BODY
    assert lsp_report["result"]["checkpoint"]["joints"] == BODY
    page = unescape(lsp_report["html"])
    table = page[page.index('<h2 id="saliency">'):]
    assert not [j for j in FACE if f'<td class="l">{j}</td>' in table]
    assert f"Not explained: {', '.join(FACE)}, which the network was not trained on" in page
    for name, fig in lsp_report["figures"].items():
        if name.startswith("saliency_"):
            titles = " ".join(ax.get_title() for ax in fig.axes)
            assert "nose" not in titles and "L eye" not in titles and "L wrist: occlusion" in titles


def test_limit_caps_the_crops_saliency_explains(lsp_report):
    """At most max(1, N // passes per crop) crops for N analysed: here 20 // (3 x 3 occlusion
    squares + 2 x 12 joints + (IG_STEPS + 1) x 13 blur-path passes) = 0, so one crop, where
    K-means chose at least 2 x 2."""
    s = lsp_report["result"]["saliency"]
    passes = saliency.occlusion_passes(PATCH, STRIDE) + 2 * len(BODY) + (IG_STEPS + 1) * (1 + len(BODY))
    assert saliency.occlusion_passes(PATCH, STRIDE) == 9 and saliency.occlusion_passes(32, 16) == 225
    assert s["cost"] == {"passes_per_crop": passes, "analysed_crops": LIMIT, "crop_budget": 1,
                         "chosen": s["cost"]["chosen"], "left_out": s["cost"]["chosen"] - 1}
    assert s["cost"]["chosen"] >= 4 and len(s["samples"]) == 1
    assert saliency.crop_budget(1000, 259) == 3 and saliency.crop_budget(10, 259) == 1


def test_the_help_states_what_limit_and_saliency_cost():
    from hgpose.cli import build_parser

    parser = build_parser()._subparsers._group_actions[0].choices["explain"]
    text = " ".join(parser.format_help().split())
    assert "forward passes (occlusion: 225 at the defaults) plus a forward and a backward pass per joint" in text
    assert "every part's cost then follows N" in text
    assert "4,096 values; 512 for the cpu preset's network" in text


def test_saliency_for_a_joint_the_network_never_learned_is_refused_before_any_pass(lsp_report, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["explain", str(lsp_report["run"]), "--data", str(lsp_report["store"]), "--out", str(out),
            "--device", "cpu", "--no-progress", "--saliency-joints", "nose,left_wrist,left_eye"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "hgpose explain: error: --saliency-joints nose,left_eye: the network was not trained on these joints "
        f"(its weights file lists 12: {', '.join(BODY)}); name joints from that list, or leave the flag out\n")
    assert not out.exists()                               # refused before the latents pass
    assert main([*argv[:-2], "--only", "pca", "--saliency-joints", "nose"]) == 0   # saliency not run: no matter


# --- evaluate's thesis column ---------------------------------------------------------------------

def test_evaluate_prints_the_thesis_column_only_for_a_coco_store(lspet_small, coco_sample_store, tmp_path, capsys):
    from hgpose.data.prepare import prepare

    run = make_run(tmp_path / "run")
    lsp = tmp_path / "lsp-store"
    prepare(lspet_small, lsp, workers=1, progress=False)
    base = ["evaluate", str(run), "--split", "test", "--protocol", "thesis", "--device", "cpu", "--no-progress"]

    assert main([*base, "--data", str(lsp), "--out", str(tmp_path / "lsp-eval")]) == 0
    printed = capsys.readouterr().out
    assert "| thesis PCK (64x64 argmax, < 3.2 px) | ours | images |\n|---|---|---|\n" in printed
    assert "thesis SHG" not in printed
    assert "\nNo thesis column: the thesis measured COCO and this data is in the lsp format, so its PCK does " \
           "not compare with these.\n" in printed
    saved = json.loads((tmp_path / "lsp-eval" / "metrics.json").read_text())
    assert saved["data"] == ["lsp"]
    assert "thesis SHG column" not in (tmp_path / "lsp-eval" / "metrics.md").read_text()

    assert main([*base, "--data", str(coco_sample_store), "--out", str(tmp_path / "coco-eval")]) == 0
    printed = capsys.readouterr().out
    assert "| thesis PCK (64x64 argmax, < 3.2 px) | ours | images | thesis SHG |" in printed
    assert re.search(r"\| all labelled \(v=1,2\) \| [\d.]+ \| [\d,]+ \| 0\.441 \|", printed)
    assert "No thesis column" not in printed
    assert (f"thesis SHG column: the thesis's own results ({LABEL}; SPEC §7)."
            in (tmp_path / "coco-eval" / "metrics.md").read_text())


def test_a_mixed_store_gets_no_thesis_column():
    from hgpose.evaluate.evaluate import format_tables

    metrics = {"split": "test", "protocol": "thesis", "n_images": 4, "n_joints": 40,
               "data": ["coco", "lsp"], "pck_thesis": {"all": 0.5, "visible": 0.5, "limbs": 0.5},
               "pck_thesis_images": {"all": 4, "visible": 4, "limbs": 4}, "coco": {}}
    table = format_tables(metrics)
    assert "thesis SHG" not in table
    assert "No thesis column: the thesis measured COCO and this data is in the lsp format, so its PCK" in table
    del metrics["data"]                          # unknown data: no column either
    assert "No thesis column: the data's format is not recorded, and the thesis measured COCO" in format_tables(metrics)


# --- an older explain.json, and a full disk --------------------------------------------------------

def test_an_explain_json_written_before_the_guards_renders_without_thesis_numbers(lsp_report, tmp_path):
    from hgpose.explain.report import render

    report = shutil.copytree(lsp_report["root"] / "report", tmp_path / "report")
    old = json.loads((report / "explain.json").read_text())
    for key in ("accuracy", "thesis_reference"):
        del old[key]
    del old["checkpoint"]["joints"]
    (report / "explain.json").write_text(json.dumps(old))
    page = unescape(re.sub(r"<[^>]+>", "", render(report).read_text()))
    assert "not recorded: this explain.json predates it; run hgpose explain again" in page
    assert "its data's format (an older hgpose wrote it)" in page
    assert [w for w in THESIS_WORDS if w in page] == []


def test_a_full_disk_leaves_the_report_as_it_was_and_the_same_command_then_works(lsp_report, tmp_path,
                                                                                 disk_full, capsys):
    out = shutil.copytree(lsp_report["root"] / "report", tmp_path / "report")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    argv = ["explain", str(lsp_report["run"]), "--data", str(lsp_report["store"]), "--out", str(out),
            "--limit", str(LIMIT), "--only", "pca", "--device", "cpu", "--no-progress"]
    disk_full(after=1)
    assert main(argv) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    import tempfile

    from hgpose import io as hgpose_io

    with pytest.MonkeyPatch.context() as mp:   # the disk has room again
        mp.setattr(hgpose_io, "tempfile", tempfile)
        assert main(argv) == 0
    assert json.loads((out / "explain.json").read_text())["accuracy"]["joints"] == BODY

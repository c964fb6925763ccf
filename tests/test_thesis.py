"""The thesis's reference numbers: SPEC's values, held by hgpose/thesis.py and nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

from hgpose import thesis

PACKAGE = Path(__file__).resolve().parents[1] / "hgpose"

# Thesis figures distinctive enough to search the code for. The generic ones (0.18, 0.028,
# 0.018, 0.65, 0.82, 0.32, 0.38, 16, 2) are also ordinary constants elsewhere (the synthetic
# bodies, plot jitter), so only test_the_values_are_specs checks them.
DISTINCTIVE = ["0.493", "0.179", "0.441", "0.469", "0.433", "0.474", "0.576", "0.467", "0.534",
               "0.107", "0.410", "0.374", "0.354", "541", "5064", "5,064", "7017", "7,017",
               "149813", "149,813"]
# (literal, file) pairs that are not the thesis's figure.
UNRELATED = {("0.107", "skeleton.py"): "COCO's OKS sigma of the hips"}


def test_the_values_are_specs():
    """Transcribed from SPEC §1, §3, §6 and §7."""
    assert thesis.TRAIN_MEAN_RGB == (0.410, 0.374, 0.354)
    assert (thesis.KEYPOINT_PEOPLE, thesis.TRAIN_CROPS, thesis.VAL_CROPS, thesis.TEST_CROPS) == (
        149_813, 124_040, 5_064, 5_064)
    assert thesis.LATENT_DIM == 4_096
    assert (thesis.ABLATION_MEAN_PCK_WITH_SKIPS, thesis.ABLATION_MEAN_PCK_WITHOUT_SKIPS) == (0.493, 0.179)
    assert (thesis.FULLY_ANNOTATED_TRAIN_CROPS, thesis.KMEANS_RANDOM_LATENTS) == (7_017, 10_000)
    assert thesis.PCK == {
        "SHG": {"val": {"all": 0.433}, "test": {"all": 0.441, "visible": 0.469, "limbs": 0.32}},
        "SHG+AE": {"val": {"all": 0.467}, "test": {"all": 0.474, "visible": 0.576, "limbs": 0.38}},
    }
    assert thesis.PCA_SPLIT == "train"
    assert thesis.PCA_RATIOS == {1: 0.534, 2: 0.028, 3: 0.018}
    assert thesis.PCA_CUMULATIVE == {10: 0.65, 100: 0.82}
    assert thesis.COMPONENTS_FOR_95 == {"SHG": 541, "SHG+AE": 16}
    assert (thesis.KMEANS_BEST_K, thesis.SILHOUETTE_RANDOM, thesis.SILHOUETTE_FULLY_ANNOTATED) == (2, 0.18, 0.107)


def test_no_other_module_or_template_holds_a_thesis_number():
    found = []
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix not in (".py", ".j2", ".html") or path == PACKAGE / "thesis.py":
            continue
        for number, line in _literals(path.read_text(encoding="utf-8")):
            if (number, path.name) not in UNRELATED:
                found.append(f"{path.relative_to(PACKAGE.parent)}: {number} in {line.strip()!r}")
    assert not found, "read these from hgpose.thesis:\n" + "\n".join(found)


def _literals(text: str):
    """(literal, line) for each distinctive thesis number standing alone in `text`."""
    pattern = re.compile(r"(?<![\d.,])(" + "|".join(map(re.escape, DISTINCTIVE)) + r")(?![\d])")
    for line in text.splitlines():
        for match in pattern.finditer(line):
            yield match.group(1), line


def test_the_search_finds_what_it_looks_for():
    """The search itself works: a number standing alone is found, one inside another is not."""
    assert [n for n, _ in _literals("x = 0.493  # thesis\n")] == ["0.493"]
    assert [n for n, _ in _literals("({len(a):,} images; thesis: 541 vs 16)")] == ["541"]
    assert not list(_literals("0.4930, 10.441, 5413, 15,064"))


def test_every_user_shows_the_numbers_of_this_module():
    import numpy as np

    from hgpose.data.formats import FORMATS
    from hgpose.data.prepare import format_summary
    from hgpose.evaluate.evaluate import THESIS_REFERENCE
    from hgpose.explain import ablation, clusters, compare, pca

    assert FORMATS["coco"].default_test_size == 5_064
    manifest = {"sources": [{"name": "coco", "format": "coco", "counts": {"train2017": {}},
                             "splits": {"train": 1, "val": 1, "test": 1}, "joints": list(range(17))}],
                "splits": {"train": 1, "val": 1, "test": 1}, "seed": 0, "mean_rgb": [0.5, 0.5, 0.5]}
    assert format_summary(manifest).endswith("[thesis: (0.410, 0.374, 0.354)]")
    assert THESIS_REFERENCE == {"val": {"all": 0.433}, "test": {"all": 0.441, "visible": 0.469, "limbs": 0.32}}
    assert (pca.THESIS_RATIOS, pca.THESIS_CUMULATIVE, pca.THESIS_N95) == (
        {1: 0.534, 2: 0.028, 3: 0.018}, {10: 0.65, 100: 0.82}, 541)
    assert ablation.THESIS == {"mean_with_skips": 0.493, "mean_without_skips": 0.179}
    assert compare.THESIS == {
        "SHG": {"pck": 0.441, "pck_split": "test", "components_for_95": 541, "pca_split": "train"},
        "SHG+AE": {"pck": 0.474, "pck_split": "test", "components_for_95": 16, "pca_split": "train"}}

    # The figures carry no thesis number (a PNG on its own would show it without its label);
    # the report's text and evaluate's table show them, labelled, where they compare.
    pck = np.full((4, 3), 0.5)
    title = ablation.histogram_figure(pck, pck / 2, "val").axes[0].get_title()
    assert title == "Skip-connection ablation, val split (4 images)"
    per_k = [{"k": k, "silhouette": 0.1, "inertia_fraction": 0.5} for k in (2, 3)]
    title = clusters.silhouette_figure({"all": {"per_k": per_k, "chosen_k": 2}}, {"all": "all"}).axes[0].get_title()
    assert title == "Mean silhouette per K"
    from hgpose.evaluate.evaluate import format_tables

    metrics = {"split": "test", "protocol": "thesis", "n_images": 4, "n_joints": 40, "data": ["coco"],
               "pck_thesis": {"all": 0.5, "visible": 0.5, "limbs": 0.5},
               "pck_thesis_images": {"all": 4, "visible": 4, "limbs": 4}, "coco": {}}
    assert "| all labelled (v=1,2) | 0.500 | 4 | 0.441 |" in format_tables(metrics)

"""The thesis's own numbers, in one place: what it measured, printed beside ours.

Every module that shows a thesis figure (evaluate's tables, prepare's summary, the explain
figures, report and explain.json) reads it from here, so a figure is corrected once.
Each constant names the SPEC section it comes from; "the thesis" is the 2021 DIKU bachelor
thesis this package reproduces, "SHG" its 1-stack network and "SHG+AE" the same network with
the 50-dim latent autoencoder. These are reference values only: no computation depends on them.

A thesis number is shown only with `LABEL` (what it is and what it was measured on) and only
beside results it compares with: `data_mismatch` and `latent_mismatch` say why not, in words,
for the reader of a report or a table.
"""

from __future__ import annotations

# --- SPEC §1, data -------------------------------------------------------------------------

#: Mean RGB of the training crops, in [0, 1] (the thesis subtracts it from the input).
TRAIN_MEAN_RGB = (0.410, 0.374, 0.354)
#: COCO 2017 people with at least one labelled keypoint.
KEYPOINT_PEOPLE = 149_813
#: Crops per split: train = train2017 minus test; val = val2017; test drawn from train2017.
TRAIN_CROPS = 124_040
VAL_CROPS = 5_064
TEST_CROPS = 5_064

# --- SPEC §3, the latent -------------------------------------------------------------------

#: Values in the analysed latent: the 3rd bottleneck Residual's 256 x 4 x 4 output.
LATENT_DIM = 256 * 4 * 4
#: Values in SHG+AE's latent: the autoencoder's code.
AE_CODE_DIM = 50

# --- SPEC §6, explainability ---------------------------------------------------------------

#: Skip-connection ablation: mean per-image thesis PCK of SHG with and without its skips.
ABLATION_MEAN_PCK_WITH_SKIPS = 0.493
ABLATION_MEAN_PCK_WITHOUT_SKIPS = 0.179
#: Training crops with all 17 joints labelled (the PCA and K-means subset (ii)).
FULLY_ANNOTATED_TRAIN_CROPS = 7_017
#: Random training latents the thesis's K-means could afford (memory), subset (i).
KMEANS_RANDOM_LATENTS = 10_000

# --- SPEC §7, reference results ------------------------------------------------------------

#: Thesis PCK (64x64 argmax, < 3.2 heatmap px): model -> split -> joints counted
#: ("all" labelled v=1,2; "visible" v=2; "limbs" wrists, elbows, knees, ankles).
PCK = {
    "SHG": {"val": {"all": 0.433}, "test": {"all": 0.441, "visible": 0.469, "limbs": 0.32}},
    "SHG+AE": {"val": {"all": 0.467}, "test": {"all": 0.474, "visible": 0.576, "limbs": 0.38}},
}
#: The split the PCA figures below were measured on (all training latents).
PCA_SPLIT = "train"
#: Share of the variance along SHG's first principal components (1-based).
PCA_RATIOS = {1: 0.534, 2: 0.028, 3: 0.018}
#: Cumulative share of the variance at these numbers of components (SHG).
PCA_CUMULATIVE = {10: 0.65, 100: 0.82}
#: Principal components needed for 95 % of the variance of each model's latent
#: (SHG: the 4,096-value latent; SHG+AE: the 50-dim code).
COMPONENTS_FOR_95 = {"SHG": 541, "SHG+AE": 16}
#: K-means: the K with the best mean silhouette, and that silhouette on the random latents
#: (nearly fully annotated vs. many joints missing) and on the fully annotated ones
#: (upright/stationary vs. moving/bent).
KMEANS_BEST_K = 2
SILHOUETTE_RANDOM = 0.18
SILHOUETTE_FULLY_ANNOTATED = 0.107

# --- SPEC §7, the training curve -----------------------------------------------------------
# Read off the thesis's results figure (full COCO, 256 features, GTX 1070), so each value is
# approximate ("≈" in SPEC §7). One thesis epoch is TRAIN_CROPS samples at batch 16.

#: Validation thesis-PCK after these (1-based) epochs: ≈ 0.07 after the first, ≈ 0.38 by
#: epoch 18, a collapse to ≈ 0.02 at epochs 19-20, ≈ 0.2 at 30, ≈ 0.41 at 31, the best at 47.
CURVE_VAL_PCK = {1: 0.07, 18: 0.38, 19: 0.02, 20: 0.02, 30: 0.2, 31: 0.41,
                 47: PCK["SHG"]["val"]["all"]}
#: (lowest, highest) validation PCK over epochs 1-10.
CURVE_VAL_PCK_EPOCHS_1_TO_10 = (0.05, 0.13)
#: (lowest, highest) validation loss over the first epochs.
CURVE_VAL_LOSS_FIRST_EPOCHS = (5.8e-5, 6.1e-5)
#: The plateau scheduler's one learning-rate drop came after this epoch.
CURVE_LR_DROP_AFTER_EPOCH = 21
#: The best epoch (by validation PCK) and its training and validation loss.
CURVE_BEST_EPOCH = 47
CURVE_BEST_TRAIN_LOSS = 4.19e-5
CURVE_BEST_VAL_LOSS = 5.43e-5
#: The lowest validation loss, its epoch and the validation PCK there.
CURVE_LOWEST_VAL_LOSS = (5.15e-5, 32, 0.42)
#: Training was stopped after this epoch.
CURVE_LAST_EPOCH = 50


# --- what the numbers are, and where they compare ------------------------------------------

#: The dataset format of everything the thesis measured (COCO 2017).
DATA_FORMAT = "coco"
#: What the thesis's numbers were measured on, said wherever one is shown ("the thesis (LABEL)").
LABEL = (f"COCO 2017; its 1-stack network (SHG) trained on full COCO train; its {LATENT_DIM:,}-value latent")
#: The kind of data of a COCO-layout source that `hgpose synth` made (not COCO's people).
SYNTHETIC = "synthetic"


def data_kinds(sources) -> list[str]:
    """What each source of a store holds (a manifest's "sources"), for `data_mismatch`: its
    dataset format, or SYNTHETIC for a COCO-layout folder made by `hgpose synth` (which leaves
    its synth.json there)."""
    from pathlib import Path

    kinds = []
    for source in sources:
        folder = source.get("path")
        synthetic = bool(folder) and (Path(folder) / "synth.json").is_file()
        kinds.append(SYNTHETIC if synthetic else source.get("format"))
    return kinds


def data_mismatch(kinds) -> str | None:
    """Why the thesis's accuracy numbers do not compare with results on data of these kinds
    (`data_kinds`), or None when they do: PCK depends on the people and the joints a dataset
    labels, so only COCO results compare with COCO's."""
    kinds = [k for k in (kinds or []) if k]
    if not kinds:
        return "the data's format is not recorded, and the thesis measured COCO"
    others = sorted(set(kinds) - {DATA_FORMAT})
    if others:
        words = ["synthetic people (hgpose synth)" if k == SYNTHETIC else f"in the {k} format" for k in others]
        return f"the thesis measured COCO and this data is {' and '.join(words)}"
    return None


def latent_mismatch(kinds, dim: int, thesis_dim: int = LATENT_DIM) -> str | None:
    """Why the thesis's latent figures (shares of variance, components for 95 %, K and
    silhouettes) do not compare with a latent of `dim` values on data of `kinds`, or None:
    they depend on the latent's size as much as on what it encodes, and on the data."""
    data = data_mismatch(kinds)
    if data:
        return data
    if dim != thesis_dim:
        return (f"the thesis's latent has {thesis_dim:,} values and this one {dim:,}; shares of variance, "
                "component counts, K and silhouettes change with the latent's size")
    return None

"""`hgpose explain` building blocks on small arrays: PCA, K-means, silhouette, walks, the latents
cache, options, the part protocol (a toy part registered end to end). Fast (a few seconds); the
end-to-end run on a trained model is in test_explain_synth.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, silhouette_score

from hgpose.data.store import Store
from hgpose.errors import HgposeError
from hgpose.explain import clusters, pca
from hgpose.explain import latents as latents_mod
from hgpose.explain.parts import default_options
from hgpose.explain.pipeline import check_options
from builders import make_store


def planted(n: int = 900, dim: int = 64, seed: int = 0):
    """Latents with known structure: a continuous factor along one direction (the largest
    variance), three clusters along two others, small isotropic noise; a random rotation hides
    the axes. Returns (latents float32 [n, dim], factor [n], cluster [n])."""
    rng = np.random.default_rng(seed)
    factor = rng.uniform(-1, 1, n)
    cluster = rng.integers(0, 3, n)
    centres = np.array([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5]])
    z = np.zeros((n, dim))
    z[:, 0] = 4.0 * factor
    z[:, 1:3] = centres[cluster] + 0.25 * rng.standard_normal((n, 2))
    z[:, 3:] = 0.1 * rng.standard_normal((n, dim - 3))
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (z @ q.T + 5.0).astype(np.float32), factor, cluster


# --- PCA -----------------------------------------------------------------------------------

def test_pca_matches_numpy_and_is_consistent():
    x, _, _ = planted(n=500, dim=32)
    p = pca.fit_pca(x, chunk=64)                 # several chunks: the accumulation is exercised
    ref = np.sort(np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False)))[::-1]
    np.testing.assert_allclose(p.eigenvalues, np.clip(ref, 0, None), rtol=1e-4, atol=1e-6 * ref[0])
    np.testing.assert_allclose(p.mean, x.mean(0), rtol=1e-6)
    r = p.ratios
    assert r.sum() <= 1 + 1e-9 and np.all(np.diff(r) <= 1e-12)
    gram = p.components.T @ p.components
    np.testing.assert_allclose(gram, np.eye(32), atol=1e-5)
    assert p.n_for(0.9) <= p.n_for(0.95) <= p.n_for(0.99) <= p.rank
    assert p.cumulative[p.n_for(0.95) - 1] >= 0.95 > (p.cumulative[p.n_for(0.95) - 2] if p.n_for(0.95) > 1 else 0)


def test_pca_on_a_subset_of_rows_equals_pca_of_those_rows():
    x, _, _ = planted(n=300, dim=16)
    rows = np.arange(0, 300, 3)
    a = pca.fit_pca(x, rows, chunk=17)
    b = pca.fit_pca(x[rows])
    # the same sums in another chunking: equal up to float32 rounding of the products
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-4, atol=1e-6 * b.eigenvalues[0])
    assert a.n == 100


def test_pca_recovers_the_planted_factor():
    x, factor, _ = planted()
    p = pca.fit_pca(x)
    scores, sq = pca.project(x, p, [0, 1, 2])
    assert abs(np.corrcoef(scores[:, 0], factor)[0, 1]) > 0.99
    assert p.ratios[0] > 0.5   # the factor has the largest variance by construction
    np.testing.assert_allclose(sq, ((x - x.mean(0)) ** 2).sum(1), rtol=1e-4)


def test_walk_finds_the_nearest_sample_in_the_full_space():
    x, _, _ = planted(n=200, dim=16)
    p = pca.fit_pca(x)
    scores, sq = pca.project(x, p, [0, 4])
    for col, k in ((0, 0), (1, 4)):
        picks = pca.walk_nearest(scores[:, col], sq, p.eigenvalues[k])
        for c, pick in zip(pca.WALK_STEPS, picks):
            target = p.mean + c * np.sqrt(p.eigenvalues[k]) * p.components[:, k]
            assert pick == np.argmin(((x - target) ** 2).sum(1))


def test_walk_components_are_the_thesis_ones_that_exist():
    x, _, _ = planted(n=200, dim=64)
    p = pca.fit_pca(x)
    assert pca.walk_components(p) == [1, 2, 3, 10, 30, 50, p.rank] and p.rank == 64
    small = pca.fit_pca(x[:12])          # 12 rows: rank 11
    assert pca.walk_components(small) == [1, 2, 3, 10, 11]


# --- K-means and silhouette ----------------------------------------------------------------

def test_silhouette_equals_sklearn():
    x, _, cluster = planted(n=400, dim=8)
    d = clusters.pairwise_distances(x)
    labels = cluster.copy()
    labels[:3] = 3                         # a tiny cluster, and ...
    labels[10] = 4                         # ... a singleton (scores 0)
    ours = clusters.silhouette(d, labels)
    theirs = silhouette_score(x.astype(np.float64), labels)
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_sweep_recovers_the_planted_clusters_and_picks_their_number():
    x, _, cluster = planted()
    p = pca.fit_pca(x)
    z, _ = pca.project(x, p, list(range(p.n_for(0.99))))
    # remove the continuous factor (PC1), as its spread would dominate the clusters
    results, sample, _ = clusters.sweep(z[:, 1:], range(2, 7), n_init=4, max_iter=300, seed=0, sample=500)
    assert len(sample) == 500 and len(set(sample.tolist())) == 500
    chosen = clusters.best(results)
    assert chosen.k == 3
    assert chosen.silhouette == max(r.silhouette for r in results)
    assert adjusted_rand_score(cluster, chosen.labels) > 0.95
    for r in results:
        assert np.bincount(r.labels, minlength=r.k).sum() == len(z) and len(np.unique(r.labels)) == r.k


def test_batched_lloyd_matches_scikit_learn():
    """hgpose's lockstep Lloyd reaches scikit-learn's objective, K by K, with valid results."""
    from sklearn.cluster import KMeans

    from hgpose.explain.lloyd import kmeans_many

    rng = np.random.default_rng(3)
    z = np.concatenate([rng.standard_normal((150, 6)) + c for c in (0, 4, 8)] +
                       [rng.standard_normal((150, 6)) * 3]).astype(np.float32)
    ours = kmeans_many(z, range(2, 7), n_init=5, seed=0)
    for k, run in ours.items():
        theirs = KMeans(k, n_init=5, random_state=0).fit(z)
        assert run.inertia == pytest.approx(theirs.inertia_, rel=0.02), k
        assert len(np.unique(run.labels)) == k and 1 <= run.n_iter <= 1000
        # the reported objective is that of the reported labels and centres
        recomputed = ((z - run.centres[run.labels]) ** 2).sum()
        assert run.inertia == pytest.approx(recomputed, rel=1e-4)
        assert np.array_equal(run.labels, ((z[:, None] - run.centres[None]) ** 2).sum(-1).argmin(1))


@pytest.mark.parametrize("algorithm", ["elkan", "minibatch"])
def test_scikit_learn_solvers_have_the_same_objective(algorithm):
    x, _, cluster = planted(n=600)
    p = pca.fit_pca(x)
    z, _ = pca.project(x, p, list(range(1, 4)))
    ours, _, _ = clusters.sweep(z, [3], n_init=4, algorithm="lloyd")
    other, _, _ = clusters.sweep(z, [3], n_init=4, algorithm=algorithm)
    assert other[0].inertia == pytest.approx(ours[0].inertia, rel=0.05)
    assert adjusted_rand_score(ours[0].labels, other[0].labels) > 0.9


def test_residual_separation_is_what_the_clustered_components_miss():
    x, _, cluster = planted(n=600, dim=16)
    p = pca.fit_pca(x)
    # clusters live in PCs 2-3: with all components nothing is missed, with only PC1 most is
    assert clusters.residual_separation(x, None, cluster, p, 16) == pytest.approx(0, abs=1e-6)
    missed = clusters.residual_separation(x, None, cluster, p, 1)
    between = sum((cluster == c).sum() * ((x[cluster == c].mean(0) - x.mean(0)) ** 2).sum() for c in range(3))
    total = ((x - x.mean(0)) ** 2).sum()
    assert missed == pytest.approx(between / total, rel=0.05)


def test_nearest_to_centroids_are_members_sorted_by_distance():
    x, _, cluster = planted(n=300, dim=8)
    centroids = np.stack([x[cluster == c].mean(0) for c in range(3)])
    nearest = clusters.nearest_to_centroids(x, cluster, centroids, 5)
    for c, rows in enumerate(nearest):
        assert np.all(cluster[rows] == c)
        d = ((x[rows] - centroids[c]) ** 2).sum(1)
        assert np.all(np.diff(d) >= 0)
        others = np.flatnonzero(cluster == c)
        assert d[-1] <= np.sort(((x[others] - centroids[c]) ** 2).sum(1))[4] + 1e-5


# --- the latents cache -----------------------------------------------------------------------

def tiny_run(root: Path, features: int = 8, seed: int = 0) -> Path:
    """A run directory holding an untrained reduced-width thesis network's weights."""
    from hgpose.models import ThesisNetwork
    from hgpose.runs.weights import save_weights, weights_metadata
    from hgpose.config import ModelConfig

    torch.manual_seed(seed)
    model = ThesisNetwork(features=features)
    config = ModelConfig(name="thesis", features=features, stacks=1)
    save_weights(root / "checkpoints" / "best.safetensors", model,
                 weights_metadata(config, [0.4, 0.4, 0.4], 1, {"val_pck": 0.0}, "thesis"))
    return root


def test_latents_are_cached_and_rebuilt_when_the_checkpoint_changes(tmp_path):
    store = make_store(tmp_path / "store", 6, 6, 6, first_fully_annotated=True)
    run = tiny_run(tmp_path / "run")
    cache = tmp_path / "cache"

    def load():
        ckpt = latents_mod.load_checkpoint(run)
        return latents_mod.load_latents(ckpt, Store.open(store), "train", cache, batch_size=4, progress=False)

    first = load()
    assert not first.reused
    assert first.values.shape == (6, 8 * 4 * 4) and first.values.dtype == np.float32
    assert isinstance(first.values, np.memmap)
    kps = np.load(store / "train" / "keypoints.npy")
    np.testing.assert_array_equal(first.labelled, (kps[..., 2] > 0).sum(1))
    np.testing.assert_array_equal(first.visible, (kps[..., 2] == 2).sum(1))
    assert list(first.fully_annotated) == [0]
    meta = json.loads((cache / "main-train-hourglass.bottleneck.2.json").read_text())
    assert meta["key"]["split"] == "train" and meta["dtype"] == "float32"

    second = load()
    assert second.reused
    np.testing.assert_array_equal(np.asarray(first.values), np.asarray(second.values))

    tiny_run(run, seed=1)                   # "retrained": other weights, same place
    third = load()
    assert not third.reused and third.meta["key"]["checkpoint_sha256"] != meta["key"]["checkpoint_sha256"]
    assert not np.allclose(np.asarray(third.values), np.asarray(first.values))
    assert not list(cache.glob(".*.tmp"))   # nothing half-written left behind


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_latents_match_a_direct_forward_pass(tmp_path, monkeypatch, precision):
    """The cached latents are the layer's output of a plain fp32 pass: to float rounding under
    --precision fp32, to bf16's ~3 significant digits under bf16 (the default where native)."""
    from hgpose.inference import load_network
    from hgpose.models import capture

    monkeypatch.setenv("HGPOSE_CPU_BF16", "1")
    store = make_store(tmp_path / "store", 6, 6, 6, first_fully_annotated=True)
    run = tiny_run(tmp_path / "run")
    ckpt = latents_mod.load_checkpoint(run, precision=precision)
    assert ckpt.precision == precision
    lat = latents_mod.load_latents(ckpt, Store.open(store), "val", tmp_path / "cache", batch_size=4, progress=False)
    assert lat.meta["key"]["precision"] == precision
    images = np.load(store / "val" / "images.npy")
    x = torch.from_numpy(images[:2]).permute(0, 3, 1, 2).float() / 255 - torch.tensor([0.4] * 3).view(1, 3, 1, 1)
    plain, _ = load_network(ckpt.path)          # unfolded, NCHW, fp32
    with torch.no_grad(), capture(plain.eval(), plain.latent_layer) as out:
        plain(x)
    expected = out[plain.latent_layer].flatten(1).numpy()
    tolerance = 1e-4 if precision == "fp32" else 0.03
    np.testing.assert_allclose(np.asarray(lat.values[:2]), expected, rtol=tolerance,
                               atol=tolerance * np.abs(expected).max())


def test_checkpoint_and_layer_errors_are_one_line(tmp_path):
    with pytest.raises(HgposeError, match="nope: not found — give a run directory"):
        latents_mod.load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HgposeError, match="no best.safetensors or last.safetensors"):
        latents_mod.load_checkpoint(tmp_path / "empty")
    store = make_store(tmp_path / "store", 6, 6, 6, first_fully_annotated=True)
    ckpt = latents_mod.load_checkpoint(tiny_run(tmp_path / "run"))
    with pytest.raises(HgposeError) as error:   # --layer: the message lists the valid names
        latents_mod.load_latents(ckpt, Store.open(store), "train", tmp_path / "c", layer="hourglass.bottleneck.9",
                                 progress=False)
    message = str(error.value)
    assert message.startswith("no layer named 'hourglass.bottleneck.9' in ThesisNetwork; did you mean: ")
    assert "its layers are: stem, " in message and "hourglass.bottleneck.{0..2}" in message
    assert "the latent is hourglass.bottleneck.2" in message and "\n" not in message


@pytest.mark.parametrize("change, message", [
    ({"only": ("pca", "umap")}, "unknown part"),
    ({"only": ("compare",)}, "needs --compare"),
    ({"k_min": 1}, "K range"),
    ({"kmeans_variance": 1.5}, "--kmeans-variance"),
    ({"occlusion_patch": 8, "occlusion_stride": 16}, "stride <= patch"),
    ({"saliency_joints": ("left_hand",)}, "unknown joint"),
    ({"saliency_limit": -1}, "--saliency-limit -1: must be 0 or more"),
    ({"sanity_crops": -2}, "--sanity-crops -2: must be 0 or more"),
    ({"ig_steps": 0}, "--ig-steps 0: must be at least 1"),
    ({"sanity_steps": 0}, "--sanity-steps 0: must be at least 1"),
    ({"index_radius": 0.0}, "--index-radius 0.0: must be a positive number of crop pixels"),
    ({"ig_blur": -3.0}, "--ig-blur -3.0: must be a positive number of crop pixels"),
])
def test_bad_options_are_user_errors(change, message):
    with pytest.raises(HgposeError, match=message):
        check_options(default_options().replace(**change))


def test_flat_option_names_reach_the_part_that_owns_them():
    """`explain(..., k_max=3)` and the command line use flat names; each lands in the common
    options or in the Options of the one part that declares it."""
    base = default_options()
    options = base.replace(only="pca,kmeans", limit=5, k_max=3, occlusion_stride=8, saliency_rows="0, 4",
                           compare="runs/ae")
    assert options.only == ("pca", "kmeans") and options.limit == 5
    assert options.parts["kmeans"].k_max == 3 and options.parts["saliency"].occlusion_stride == 8
    assert options.parts["saliency"].saliency_rows == (0, 4) and options.parts["compare"].compare == "runs/ae"
    assert base == default_options()           # the options replaced are left as they were
    flat = options.flat()                      # explain.json's "options"
    assert flat["k_max"] == 3 and flat["saliency_rows"] == [0, 4] and flat["only"] == ["pca", "kmeans"]
    with pytest.raises(TypeError, match="unknown explain option.* k_maxx"):
        base.replace(k_maxx=3)


def _explain_parser():
    from hgpose.cli import build_parser

    return build_parser()._subparsers._group_actions[0].choices["explain"]


def test_every_part_states_its_options_flags_and_fragment_once():
    """Each registered part: options with defaults (valid ones), flags whose defaults (and the
    defaults their help states) are the dataclass's, and an existing report fragment."""
    from dataclasses import MISSING, fields

    from hgpose.explain.parts import PARTS, option_owners

    owners = option_owners()                   # raises if two parts declare the same name
    parser = _explain_parser()
    args = parser.parse_args(["RUN_DIR", "--data", "DATA_DIR", "--out", "REPORT_DIR"])
    actions = {a.dest: a for a in parser._actions}
    for name, part in PARTS.items():
        defaults = part.Options()
        defaults.check(default_options())
        for f in fields(part.Options):
            assert f.default is not MISSING or f.default_factory is not MISSING, (name, f.name)
            if f.name in actions:
                assert getattr(args, f.name) == getattr(defaults, f.name), (name, f.name)
                shown = actions[f.name].default
                if shown not in (None, (), False):     # an on/off flag (store_true) states none
                    assert f"(default: {shown})" in actions[f.name].help, (name, f.name)
        assert Path(part.TEMPLATE).is_file(), name
        assert f'<h2 id="{name}">' in Path(part.TEMPLATE).read_text(), name   # the nav's anchor
        assert part.TITLE and isinstance(part.SELECTABLE, bool)
    # every flag feeds an option, and the command line's defaults are the options' defaults
    assert set(actions) - {"help", "run_dir", "data", "out"} <= set(owners)
    given = vars(args)
    assert default_options().replace(**{k: given[k] for k in owners if k in given}) == default_options()


def test_listing_the_parts_flags_keeps_the_command_line_light():
    """The command line imports every part to add its flags: none may pull in torch,
    scikit-learn or matplotlib at import, or every `hgpose` command would start seconds later."""
    import subprocess
    import sys

    code = ("import sys; from hgpose.cli import build_parser; build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'matplotlib', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_registered_toy_part_runs_end_to_end(tmp_path, monkeypatch, capsys):
    """Adding an analysis = its module + one registry line: a toy part with its own option,
    flag, run, figure, report fragment and summary line goes through `hgpose explain`."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from matplotlib.figure import Figure

    from hgpose.cli import main
    from hgpose.explain import explain, parts

    @dataclass
    class ToyOptions:
        toy_scale: float = 1.5

        def check(self, options):
            if self.toy_scale <= 0:
                raise HgposeError(f"--toy-scale {self.toy_scale}: give a positive factor")

        @classmethod
        def add_arguments(cls, parser):
            parser.add_argument("--toy-scale", dest="toy_scale", type=float, default=cls.toy_scale,
                                help=f"factor of the toy mean (default: {cls.toy_scale})")

    def run(ctx):
        scaled = float(np.asarray(ctx.latents.values, np.float64).mean()) * ctx.options.parts["toy"].toy_scale
        fig = Figure(figsize=(2, 2))
        fig.subplots().plot([0, 1], [0, scaled])
        return {"scaled_mean": scaled, "crops": len(ctx.latents), "note": "a<b",
                "figure": ctx.save_figure(fig, "toy.png")}

    fragment = tmp_path / "toy.html.j2"
    fragment.write_text('<h2 id="toy">Toy analysis</h2>\n'
                        '<p>toy mean {{ r.toy.scaled_mean | num(4) }} over {{ r.toy.crops }} crops; {{ r.toy.note }}</p>\n'
                        '<figure><img src="{{ img[r.toy.figure] }}" alt="toy"></figure>\n')
    toy = SimpleNamespace(Options=ToyOptions, TITLE="Toy", TEMPLATE=fragment, SELECTABLE=True,
                          wanted=lambda ctx: ctx.asked("toy"), run=run,
                          summary_lines=lambda section, result: [f"  toy: mean {section['scaled_mean']:.4f}"])
    monkeypatch.setitem(parts.PARTS, "toy", toy)
    store = make_store(tmp_path / "store", 5, 2, 2)
    run_dir = tiny_run(tmp_path / "run")
    out = tmp_path / "report"
    argv = ["explain", str(run_dir), "--data", str(store), "--out", str(out), "--device", "cpu", "--no-progress",
            "--only", "toy"]
    assert main([*argv, "--toy-scale", "2"]) == 0

    result = json.loads((out / "explain.json").read_text())
    latents = np.load(out / "latents" / "main-train-hourglass.bottleneck.2.npy").astype(np.float64)
    assert result["toy"] == {"scaled_mean": pytest.approx(2 * latents.mean()), "crops": 5, "note": "a<b",
                             "figure": "figures/toy.png"}
    assert result["options"]["toy_scale"] == 2.0 and "pca" not in result   # --only toy: nothing else
    assert (out / "figures" / "toy.png").read_bytes().startswith(b"\x89PNG")
    html = (out / "report.html").read_text()
    assert '<a href="#toy">Toy</a>' in html and '<h2 id="toy">Toy analysis</h2>' in html
    assert f"toy mean {2 * latents.mean():.4f} over 5 crops; a&lt;b</p>" in html   # autoescaped as the page
    assert f"  toy: mean {2 * latents.mean():.4f}" in capsys.readouterr().out.splitlines()

    assert main([*argv, "--toy-scale", "-1"]) == 2                            # its own check
    assert capsys.readouterr().err.strip() == "hgpose explain: error: --toy-scale -1.0: give a positive factor"
    again = explain(run_dir, store, out, only="toy", toy_scale=3, progress=False)   # its flat name
    assert again["toy"]["scaled_mean"] == pytest.approx(3 * latents.mean())


# --- the report of a whole (tiny) run --------------------------------------------------------

@pytest.fixture(scope="module")
def explained_val(tmp_path_factory):
    """`explain` with --compare on the val split of a tiny store (untrained 8-feature SHG and
    SHG+AE; every part but saliency): seconds, for the report's text."""
    from hgpose.config import ModelConfig
    from hgpose.explain import explain
    from hgpose.models import ThesisNetwork
    from hgpose.runs.weights import save_weights, weights_metadata

    root = tmp_path_factory.mktemp("explained")
    store = make_store(root / "store", 8, 8, 2, first_fully_annotated=True)
    torch.manual_seed(0)
    save_weights(root / "ae" / "checkpoints" / "best.safetensors", ThesisNetwork(features=8, autoencoder=True),
                 weights_metadata(ModelConfig(name="thesis", features=8, autoencoder=True), [0.4] * 3, 0, {},
                                  "thesis-ae"))
    result = explain(tiny_run(root / "run"), store, root / "report", split="val", compare=str(root / "ae"),
                     only=("pca", "kmeans", "ablation", "compare"), k_max=3, n_init=1, nearest=2,
                     scatter_points=4, progress=False)
    return root / "report", result


def test_shg_vs_shg_ae_names_the_split_of_every_number(explained_val):
    from hgpose.explain.pipeline import format_summary
    from hgpose.explain.report import render

    report, result = explained_val
    section = result["compare"]
    assert section["split"] == "val" and [m["model"] for m in section["models"]] == ["SHG", "SHG+AE"]
    assert section["thesis"] == {   # the thesis's numbers come from two other splits
        "SHG": {"pck": 0.441, "pck_split": "test", "components_for_95": 541, "pca_split": "train"},
        "SHG+AE": {"pck": 0.474, "pck_split": "test", "components_for_95": 16, "pca_split": "train"}}
    assert json.loads((report / "explain.json").read_text())["compare"]["split"] == "val"

    summary = format_summary(result, report).splitlines()
    shg, ae = section["models"]
    assert (f"  SHG (this run), val split: PCK {shg['pck']['all']:.3f}, "
            f"{shg['components_for_95']} components for 95 % of 128") in summary
    assert any(line.startswith("  SHG+AE (--compare), val split: PCK ") for line in summary)

    html = (report / "report.html").read_text()
    assert '<h2 id="compare">SHG vs SHG+AE, val split</h2>' in html
    assert "Both networks on the same crops of the <b>val</b> split" in html
    assert ('<td class="l">SHG (this run)</td><td class="l"><code>hourglass.bottleneck.2</code></td>'
            '<td class="l">val</td>') in html
    assert ('<td class="l">thesis SHG+AE</td><td></td><td class="l">PCK: test; PCA: train</td><td></td>'
            '<td>0.474</td><td>0.576</td><td>0.38</td><td>16</td>') in html
    assert "on the same val crops" in html

    rows = [{"model": "SHG", "role": "this run", "dim": 4, "components_for_95": 2, "pck": {"all": 0.5},
             "cumulative": [0.6, 0.96, 1.0, 1.0]}]
    assert compare_title(rows, "val") == "Latent PCA of both models on the val split, side by side"

    # An explain.json written before the split was recorded is still rendered: the run's split.
    old = json.loads((report / "explain.json").read_text())
    del old["compare"]["split"]
    (report / "explain.json").write_text(json.dumps(old))
    render(report)
    assert '<h2 id="compare">SHG vs SHG+AE, val split</h2>' in (report / "report.html").read_text()


def compare_title(rows: list[dict], split: str) -> str:
    from hgpose.explain import compare

    return compare.figure(rows, split).axes[0].get_title()


def test_the_report_shows_the_thesis_numbers_of_hgpose_thesis(explained_val, tmp_path):
    """Where they compare, labelled: the ablation's PCK on this COCO-format store; the PCA and
    K-means figures only beside a latent of the thesis's 4,096 values (this one has 128, so
    the page says why not, and shows them once explain.json says they compare)."""
    from html import unescape

    from hgpose.explain.report import render
    from hgpose.thesis import LABEL

    html = unescape((explained_val[0] / "report.html").read_text())
    assert f"The thesis ({LABEL}): mean per-image PCK 0.493 with skips, 0.179 without." in html
    assert ("The thesis's PCA figures are not set beside these: the thesis's latent has 4,096 values and "
            "this one 128;") in html
    text = re.sub(r'src="data:[^"]*"', "", html)     # the figures' base64 holds any digits
    assert "0.534" not in text and "541" not in re.sub(r"thesis SHG\+AE.*?</tr>", "", text)

    report = shutil.copytree(explained_val[0], tmp_path / "report")
    result = json.loads((report / "explain.json").read_text())
    result["thesis_reference"]["latent"] = {"comparable": True, "why_not": None}
    (report / "explain.json").write_text(json.dumps(result))
    html = unescape(render(report).read_text())
    assert (f"The thesis ({LABEL}), on all its 124,040 training latents: PC1 0.534, PC2 0.028, PC3 0.018; "
            "65 % at 10 components, 82 % at 100; 95 % needs 541.") in html
    assert ('<td class="l">the thesis (COCO train, its SHG\'s latent)</td><td>124,040</td><td>4,096</td><td></td>'
            '<td>0.534</td><td></td><td>541</td>') in html
    assert (f"The thesis ({LABEL}) found K = 2 best (silhouette ≈ 0.18 on 10,000 random latents: nearly fully "
            "annotated vs. many joints missing; ≈ 0.107 on fully annotated ones).") in html

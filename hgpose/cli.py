"""The `hgpose` command line: a thin layer over the Python API.

Each sub-command has an `_add_<name>` (its options and help) and a `_run_<name>` (calls the
API). Problems the user can fix surface as one line `hgpose <cmd>: error: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import math
import sys

from hgpose import __version__, thesis
from hgpose.config import PRECISIONS, PRESETS, REFINEMENTS
from hgpose.errors import HgposeError


def _test_size(text: str) -> float | int:
    """`--test-size`: an integer count, or a fraction in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count nor a fraction") from None
    if 0 < value < 1:
        return value
    if math.isfinite(value) and value >= 1 and value == int(value):  # not inf: 1e400 reads as inf
        return int(value)
    raise argparse.ArgumentTypeError(f"{text!r}: give a finite whole count >= 1 or a fraction in (0, 1)")


def _pixels(text: str) -> int:
    """`--max-pixels`: a pixel count, plain or with an exponent (1e8); finite (not 1e400)."""
    from hgpose.images import pixel_count

    value = pixel_count(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite whole pixel count >= 1, e.g. 100000000 or 1e8")
    return value


def _workers(text: str) -> int:
    """`--workers`: a whole number of processes >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least 1 process")
    return value


def _minutes(text: str) -> float:
    """`demo --minutes`: a finite time > 0 (nan or inf would train without an end)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a time in minutes > 0, e.g. 10")
    return value


MAX_PIXELS_HELP = ("refuse images over this many pixels (width x height), read from the file's "
                   "header before decoding, so a 'decompression bomb' cannot exhaust the memory "
                   "(default: 1e8 = 100 megapixels, or $HGPOSE_MAX_PIXELS)")


# --- options shared by several commands, each defined once ----------------------------------

def _add_run(p) -> None:
    """RUN_DIR and --checkpoint: which trained network a command reads (hgpose.runs' rule)."""
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="run directory of `hgpose train` (or a .safetensors weights file)")
    p.add_argument("--checkpoint", default=None, metavar="best|last|FILE",
                   help="which weights of RUN_DIR: best, last, or a file (e.g. epoch_010.safetensors "
                        "in RUN_DIR/checkpoints) (default: best, or last while the run has no best)")


def _add_data(p) -> None:
    p.add_argument("--data", required=True, metavar="DATA_DIR",
                   help="dataset store written by `hgpose prepare`")


def _add_device(p) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)")


def _add_precision(p, default: str | None = "auto", what: str = "auto") -> None:
    """--precision: one vocabulary and one rule for training and inference (config.PRECISIONS,
    hgpose.inference.device)."""
    p.add_argument("--precision", default=default, choices=PRECISIONS,
                   help="autocast of the forward passes: auto = bf16 where the CPU (AMX / "
                        "AVX-512-BF16) or GPU computes it natively, else fp32; bf16 (refused where "
                        "not native); fp16 (CUDA); fp32 = none. Weights stay fp32 "
                        f"(default: {what})")


def _add_decoding(p) -> None:
    """--flip and --refine: how a run's heatmaps become keypoints (evaluate, predict)."""
    p.add_argument("--flip", action="store_true",
                   help="flip test: average each crop's heatmaps with those of its mirror image, "
                        "left/right joints swapped (default: off)")
    p.add_argument("--refine", default=None, choices=tuple(REFINEMENTS),
                   help="how the heatmap argmax is refined when decoding: "
                        + "; ".join(f"{name}: {text}" for name, text in REFINEMENTS.items())
                        + " (default: the run's target.refine; each codec knows some: the thesis "
                          "codec only plain argmax)")


def _add_max_pixels(p, then: str) -> None:
    p.add_argument("--max-pixels", type=_pixels, default=None, metavar="N", help=f"{MAX_PIXELS_HELP}; {then}")


def _add_no_progress(p) -> None:
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on synthetic people, on a CPU, in about 10 minutes",
        description=(
            "Run every stage for real on a built-in default: synth (synthetic people in COCO "
            "format) -> prepare -> train (thesis network at 16 features) -> evaluate -> "
            "predict -> explain -> report.html. Needs no data and no GPU. Run it again and "
            "finished stages are skipped; an interrupted training continues."
        ),
        epilog=("Ends by printing the headline numbers and where report.html is. DIR must be new, "
                "empty or an earlier demo's: a demo made with other --train-images, --val-images or "
                "--seed is refused (its training belongs to its data), so choose another --out for "
                "other sizes."),
    )
    p.add_argument("--out", default="demo-out", metavar="DIR", help="output folder (default: demo-out)")
    p.add_argument("--minutes", type=_minutes, default=10.0, metavar="M",
                   help="time budget; training gets what the other stages leave (default: 10)")
    p.add_argument("--train-images", type=_count, default=400, metavar="N",
                   help="synthetic training images (default: 400)")
    p.add_argument("--val-images", type=_count, default=60, metavar="N",
                   help="synthetic validation images (default: 60)")
    p.add_argument("--seed", type=_count, default=0, help="seed of the data and the split, >= 0 (default: 0)")


def _run_demo(args) -> int:
    from hgpose.demo import demo, format_headline

    headline = demo(args.out, minutes=args.minutes, train_images=args.train_images,
                    val_images=args.val_images, seed=args.seed)
    print(format_headline(headline))
    return 0


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="COCO 2017 and/or LSP/LSPET -> thesis crops (256x256) in COCO-17, splits, mean RGB",
        usage="hgpose prepare [options] SOURCE [SOURCE ...] OUT_DIR",
        description=(
            "Cut one 256x256 crop per keypoint-annotated person with the thesis's crop rule, "
            "map every dataset's joints into COCO-17, split the crops into train/val/test and "
            "compute the mean RGB of the training crops. Several SOURCE folders make one store "
            "(e.g. COCO + LSPET); every crop records its source. Interrupted runs resume where "
            "they stopped when started again."
        ),
        epilog=(
            "SOURCE is a COCO root (annotations/person_keypoints_{train,val}2017.json, "
            "train2017/, val2017/) or an LSP/LSPET folder (joints.mat + images/); the format is "
            "detected, or named as coco:PATH / lsp:PATH. Splits: COCO's val is val2017 and its "
            "test is drawn from train2017; LSP's val and test are seeded draws (--val-size, "
            "--test-size). LSP has no face joints: they are absent (never in a loss or metric). "
            "Each joints.mat flag is read by its dataset's own meaning: LSPET (14x3xN) 1 = annotated, "
            "0 = not annotated; LSP (3x14xN) 1 = occluded, 0 = visible. "
            "OUT_DIR receives manifest.json and {train,val,test}/{images,keypoints,boxes,ids,"
            "source}.npy (see README, 'Dataset store'). OUT_DIR must be new, empty or a store of "
            "`hgpose prepare` (marked by its .hgpose-prepare.json or manifest.json): any other "
            "folder is refused, so nothing prepare did not write is replaced. The crops' disk "
            "space (196,608 bytes each: ~30 GB for full COCO) is reserved at the start, so a disk "
            "too small fails at once. Images with an EXIF orientation are read as stored, the "
            "pixels the annotations refer to, and counted."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="SOURCE [SOURCE ...] OUT_DIR: one or more dataset folders, then where the "
                        "dataset store is written")
    p.add_argument(
        "--test-size", type=_test_size, default=None, metavar="N|FRACTION",
        help=f"test crops per source: a count, or a fraction in (0,1) (default: COCO {thesis.TEST_CROPS} drawn "
             "from train2017, as in the thesis, or 10%% where train2017 is too small; LSP 10%%)",
    )
    p.add_argument(
        "--val-size", type=_test_size, default=None, metavar="N|FRACTION",
        help="val crops of a source without a val split (LSP): a count or a fraction "
             "(default: 10%%); never overlaps the test crops",
    )
    p.add_argument("--seed", type=_count, default=0, help="seed of the val/test draws, >= 0 (default: 0)")
    p.add_argument(
        "--workers", type=_workers, default=None,
        help="processes decoding and cropping images, >= 1 (default: the number of CPU cores); never "
             "more than the CPU cores nor the shards of 32 images left to crop",
    )
    p.add_argument(
        "--keep-work", action="store_true",
        help="keep the intermediate shards in OUT_DIR/.work after success (default: delete them)",
    )
    _add_max_pixels(p, "larger images are skipped and counted")


def _run_prepare(args) -> int:
    from hgpose.data.prepare import prepare, format_summary
    from hgpose.images import set_max_pixels

    if len(args.paths) < 2:
        raise HgposeError("give at least one SOURCE folder and then OUT_DIR, e.g. "
                          "`hgpose prepare COCO_ROOT data/coco` or `hgpose prepare lsp:LSPET data/lspet`")
    *sources, out_dir = args.paths
    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)  # inherited by the worker processes
    manifest = prepare(
        sources, out_dir, test_size=args.test_size, val_size=args.val_size, seed=args.seed,
        workers=args.workers, keep_work=args.keep_work,
    )
    print(format_summary(manifest))
    return 0


def _positive(text: str) -> float:
    """A finite number > 0 (`--minutes`)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number, e.g. 60")
    return value


def _count(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a count >= 0")
    return value


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="make a synthetic COCO-format keypoint dataset with known generating factors",
        description=(
            "Draw articulated synthetic people (COCO-17 skeleton; postures standing, walking, "
            "sitting, arms_raised, bending; random scale, position, rotation, facing, occluders, "
            "cluttered backgrounds) and write them in COCO 2017 layout, ready for `hgpose prepare`. "
            "Every annotation records its generating factors in an extra 'synth' field "
            "(see docs/synth.md). The same seed gives byte-identical annotation files."
        ),
        epilog=(
            "OUT_DIR receives annotations/person_keypoints_{train,val}2017.json, train2017/*.jpg "
            "and val2017/*.jpg, and synth.json last (the set is complete once it is there). "
            "OUT_DIR must be new, empty or an earlier synth's (marked by its .hgpose-synth.json "
            "or synth.json): any other folder is refused. Example: hgpose synth data/synth && "
            "hgpose prepare data/synth data/synth-store --test-size 0.2"
        ),
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder that receives the COCO-layout dataset")
    p.add_argument(
        "--train-images", type=_count, default=400, metavar="N",
        help="images written to train2017/ (default: 400)",
    )
    p.add_argument(
        "--val-images", type=_count, default=100, metavar="M",
        help="images written to val2017/ (default: 100)",
    )
    p.add_argument("--seed", type=_count, default=0, help="seed of every random choice, >= 0 (default: 0)")
    p.add_argument(
        "--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"),
        help="image width and height in pixels (default: 640 480)",
    )
    p.add_argument(
        "--workers", type=_workers, default=None,
        help="processes drawing images, >= 1; the output does not depend on it "
             "(default: the number of CPU cores; never more than the CPU cores, nor one per 32 images)",
    )


def _run_synth(args) -> int:
    from hgpose.synth import format_summary, generate

    summary = generate(
        args.out_dir, train_images=args.train_images, val_images=args.val_images,
        seed=args.seed, size=tuple(args.size), workers=args.workers,
    )
    print(format_summary(summary))
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a pose network on a prepared store (presets thesis, newell, thesis-ae, cpu)",
        description=(
            "Train a Stacked Hourglass network on the crops of `hgpose prepare`. Presets: "
            "'thesis' (SPEC section 4: one hourglass, MSE, RMSprop, plateau schedule on validation "
            "PCK), 'newell' (8 stacks, Gaussian targets, augmentation, Adam, flip test), "
            "'thesis-ae' (the thesis's autoencoder: pre-trained on latents of an --init thesis "
            "network, then fine-tuned end to end), 'cpu' (real people on a CPU in an hour: "
            "2 stacks at 128 features working at 128x128, Gaussian targets, light augmentation, Adam on batches of 8, "
            "bf16 where the CPU has it). Ctrl-C saves a resumable state; --resume "
            "continues exactly where the run stopped."
        ),
        epilog=(
            "RUN_DIR receives config.json, metrics.csv, tb/ (TensorBoard) and checkpoints/ "
            "(state.pt, last/best/epoch_NNN.safetensors). Multi-GPU: torchrun "
            "--nproc_per_node=K -m hgpose train ... (batch size is per process). "
            "Keys for --set: see docs/training.md, or pass a wrong one to get the list."
        ),
    )
    p.add_argument("data_dir", metavar="DATA_DIR", help="dataset store written by `hgpose prepare`")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (new, or existing with --resume)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="recipe to start from (default: thesis); --resume goes on with RUN_DIR/config.json, "
                        "and refuses another preset")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, metavar="E",
                        help="epochs (thesis-ae: fine-tuning epochs; AE pre-training is --set ae.epochs=N)")
    length.add_argument("--minutes", type=_positive, default=None, metavar="M",
                        help="train for M minutes of wall-clock time instead: the first epoch is timed, "
                             "the epochs that fit are planned with the preset's lr decays in proportion "
                             "(planned again at the first decay), and the run stops at the budget with "
                             "its best weights (RUN_DIR/budget.json; --resume continues the budget)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="crops per step and process")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="change any config field, e.g. --set model.features=64 optim.lr=1e-3 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR from its saved state, on the same store; a change given "
                        "with it (--epochs, --set, ...) is applied and recorded, or refused when it would make "
                        "the run mean something else (model.*, target.*, optim.name, seed, ...: docs/training.md)")
    p.add_argument("--init", metavar="CKPT", default=None,
                   help="start from these weights: a .safetensors file, or a run directory (its best, else last); "
                        "required by thesis-ae (a thesis network)")
    _add_precision(p, default=None, what="the preset's: thesis fp32, the others auto")


def _run_train(args) -> int:
    import os

    from hgpose.train import TrainingInterrupted, format_summary, train

    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, only rank 0 reports
    try:
        summary = train(
            args.data_dir, args.out, preset=args.preset, epochs=args.epochs, minutes=args.minutes,
            batch_size=args.batch_size, resume=args.resume, init=args.init,
            overrides=args.overrides + ([f"precision={args.precision}"] if args.precision else []),
        )
    except TrainingInterrupted as e:
        if main_process:
            print(f"hgpose train: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, the last saved state kept
        if main_process:
            print(f"hgpose train: interrupted without saving; {_train_again(args)}", file=sys.stderr)
        return 130
    except OSError as e:
        # A full disk or a refused path: the epoch's files were written as one set, so the
        # run is as it was at its last save, and the next command is the one to say.
        where = f"{e.filename}: " if e.filename else ""
        raise HgposeError(f"{where}{e.strerror or e}; check that path (permissions, free space), "
                          f"then {_train_again(args)}") from None
    if main_process:
        print(format_summary(summary))
    return 0


def _train_again(args) -> str:
    """What runs a stopped `train` on: --resume once the run saved anything, else the same command."""
    from hgpose.runs import RunDir

    run = RunDir(args.out)
    if args.resume or not run.has_progress():
        return "run the same command again"
    return "add --resume to the same command to continue from the last saved state"


def _parts(text: str) -> tuple[str, ...]:
    """`--only`: a comma-separated subset of the explain parts."""
    from hgpose.explain.parts import selectable_parts

    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in selectable_parts()]
    if not parts or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a comma-separated list of {', '.join(selectable_parts())}")
    return parts


def _add_explain(sub) -> None:
    from hgpose.explain.parts import PARTS, selectable_parts

    p = sub.add_parser(
        "explain",
        help="what the network learned: latent PCA and K-means, skip ablation, saliency, HTML report",
        description=(
            "Run a trained network over one split of a dataset store, keep its latent (by default "
            "the model's latent layer: the thesis network's 3rd bottleneck Residual, 4,096 values; "
            "512 for the cpu preset's network) in a memory-mapped cache, and analyse it as "
            "the thesis did -- PCA with PC walks, K-means for K=2..10 chosen by silhouette, on all "
            "crops and on the fully annotated ones -- plus the skip-connection ablation, per-joint "
            "saliency (occlusion, Grad-CAM) and, with --compare, SHG vs SHG+AE. Writes "
            "REPORT_DIR/explain.json (every number), figures/*.png and one self-contained "
            "report.html, which opens with the network's thesis PCK on the crops beside what a "
            "network that learned nothing scores there, and warns when it is near that level; "
            "the thesis's numbers appear only where they compare (COCO data; its 4,096-value "
            "latent for the PCA and K-means figures). Running again reuses the latents while the "
            "checkpoint is unchanged; with --only it recomputes just those parts and keeps the others."
        ),
        epilog=(
            "Example: hgpose explain runs/thesis --data data/coco --out reports/thesis-train; "
            "hgpose explain runs/thesis --data data/coco --out reports/val --split val "
            f"--compare runs/thesis-ae. Full COCO train ({thesis.TRAIN_CROPS:,} crops) needs ~2 GB of disk for the "
            "latents and a GPU for the network passes; the analysis itself runs on the CPU "
            "(see docs/explain.md for times)."
        ),
    )
    # The options all parts share (ExplainOptions' fields; dest = the field name) ...
    _add_run(p)
    _add_data(p)
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="where explain.json, figures/ and report.html go")
    p.add_argument("--split", default="train", choices=("train", "val", "test"),
                   help="the crops to analyse (default: train, as the thesis)")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="module whose output is the latent (default: the model's latent layer: "
                        "hourglass.bottleneck.2, or the AE code for SHG+AE); an unknown name lists the valid ones")
    p.add_argument("--only", type=_parts, default=(), metavar="PARTS",
                   help=f"run only these parts, comma-separated: {','.join(selectable_parts())} "
                        "(default: all but probes and cka, which run only when named; compare only with --compare)")
    p.add_argument("--cache", dest="cache_dir", default=None, metavar="DIR",
                   help="folder of the latents cache (default: REPORT_DIR/latents)")
    p.add_argument("--limit", type=_count, default=0, metavar="N",
                   help="use only the first N crops of the split; every part's cost then follows N: one "
                        "network pass per crop for the latents and one more for the ablation, PCA and "
                        "K-means on N rows, saliency on at most as many crops as cost no more passes than "
                        "the latents (see --saliency-samples) (default: 0 = all)")
    _add_device(p)
    _add_precision(p)
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="crops per network pass (default: 32)")
    p.add_argument("--workers", type=_count, default=0, metavar="N",
                   help="DataLoader processes reading crops (default: 0 = in the main process)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of K-means, the silhouette sample and drawings (default: 0)")
    # ... each registered part's own ...
    for part in PARTS.values():
        part.Options.add_arguments(p)
    # ... and the last common one.
    _add_no_progress(p)


def _run_explain(args) -> int:
    from hgpose.explain import explain
    from hgpose.explain.parts import default_options, option_owners
    from hgpose.explain.pipeline import format_summary

    given = vars(args)   # a part option without a flag keeps its default
    options = default_options().replace(**{name: given[name] for name in option_owners() if name in given})
    result = explain(args.run_dir, args.data, args.out, options)
    print(format_summary(result, args.out))
    return 0


def _box(text: str) -> tuple[float, float, float, float]:
    """`--box x,y,w,h`: a person box in image pixels (COCO's bbox order), four finite numbers."""
    import math

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give x,y,w,h in pixels, four finite numbers with "
                                         "w > 0 and h > 0, e.g. 120,40,200,380")
    return values


def _min_score(text: str) -> float:
    """`--min-score`: a finite fraction >= 0 (NaN would fade no joint and say nothing)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a fraction >= 0, e.g. 0.25")
    return value


def _add_evaluate(sub) -> None:
    from hgpose.evaluate.protocols import BOX_SCORE_THRESHOLD, DESCRIPTIONS, PROTOCOLS

    p = sub.add_parser(
        "evaluate",
        help="score a trained network on a split: thesis PCK, PCK@0.2, COCO OKS AP, error diagnosis",
        description=(
            "Run a trained network on every person of one split of a dataset store and score "
            "it: the thesis PCK (64x64 argmax, < 3.2 heatmap px, per-image mean; all / visible "
            "/ limbs, and per joint; always on the store's thesis crops), PCK@0.2 in "
            "original-image coordinates (box- and torso-normalised) and COCO keypoint AP/AR, "
            "computed by pycocotools' COCOeval on the original annotation file. --protocol "
            "says which crops the network sees. Prints the main table."
        ),
        epilog=(
            "OUT_DIR receives metrics.json, metrics.md (tables), per_image.csv, "
            "keypoints_<split>_results.json (COCO results format, loadable by pycocotools) and "
            "errors.png: the error diagnosis (Ronchi & Perona 2017; \"errors\" in metrics.json) "
            "of every keypoint as good, jitter, inversion, swap or miss, and COCO AP with each "
            "error type corrected. "
            "gt-box and detections read the original images where DATA_DIR/manifest.json "
            "records them. Uses the GPU when there is one. Example: hgpose evaluate "
            "runs/thesis --data data/coco --split val --protocol gt-box --flip"
        ),
    )
    _add_run(p)
    _add_data(p)
    p.add_argument("--split", choices=("test", "val", "train"), default="test",
                   help="split to evaluate (default: test)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="gt-box",
                   help="which crops the network sees (default: gt-box). "
                        + " ".join(f"{name}: {text}." for name, text in DESCRIPTIONS.items()))
    p.add_argument("--boxes", default=None, metavar="FILE",
                   help="--protocol detections: the person boxes, a COCO detection results file "
                        "(JSON list of {image_id, category_id, bbox [x,y,w,h], score}, as "
                        "mmpose's bbox_file)")
    p.add_argument("--box-score-threshold", type=float, default=None, metavar="X",
                   help="--protocol detections: leave out boxes scoring below X (default: "
                        f"{BOX_SCORE_THRESHOLD:g}, every box, as mmpose and HRNet on COCO)")
    _add_decoding(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: RUN_DIR/eval/<split>-<protocol>-<checkpoint>[-flip])")
    p.add_argument("--batch-size", type=int, default=32, metavar="N",
                   help="crops per forward pass (default: 32)")
    _add_device(p)
    _add_precision(p)
    p.add_argument("--annotations", default=None, metavar="FILE",
                   help="COCO annotation file of the split, if it moved since `hgpose prepare` "
                        "(default: the path recorded in DATA_DIR/manifest.json)")
    p.add_argument("--joints", default="trained", metavar="trained|all|body|NAMES",
                   help="joints scored by every metric: those the network was trained on "
                        "(default; an LSP-trained network never saw faces), all 17, the 12 body "
                        "joints, or comma-separated names such as left_wrist,right_wrist")
    _add_no_progress(p)


def _run_evaluate(args) -> int:
    from hgpose.evaluate.evaluate import evaluate, format_tables

    metrics = evaluate(
        args.run_dir, args.data, split=args.split, protocol=args.protocol, boxes=args.boxes,
        box_score_threshold=args.box_score_threshold, checkpoint=args.checkpoint, flip=args.flip,
        refine=args.refine, out_dir=args.out, batch_size=args.batch_size, device=args.device,
        annotations=args.annotations, joints=args.joints, precision=args.precision,
        progress=args.progress,
    )
    print(format_tables(metrics))
    print(f"written to {metrics['out_dir']}")
    return 0


def _saliency_people(text: str) -> int:
    """`predict --saliency-people`: a whole number of people >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least 1 person")
    return value


def _add_predict(sub) -> None:
    from hgpose.explain.saliency import DEFAULT_JOINTS, PATCH, PEOPLE_PER_IMAGE as SALIENCY_PEOPLE, STRIDE, \
        occlusion_passes

    p = sub.add_parser(
        "predict",
        help="keypoints of the people in each image, as JSON and pictures",
        description=(
            "For each image, as it is displayed (its EXIF orientation applied): crop every person "
            "box (--boxes FILE: each image's own boxes; --box: one box for every image) as "
            "`hgpose evaluate`'s gt-box protocol does (centred square, the box's longer side x 1.25, "
            "black past the image's border), run the network and write the 17 keypoints with scores "
            "of every person in image coordinates as JSON (COCO results format), the image with "
            "every skeleton drawn (left orange, right blue, low-score joints faded) and each "
            "person's fused heatmaps over its crop (the thesis's Figure 5) with a colour bar; "
            "pictures at most 2048 px on their longer side. Without --box or --boxes each image "
            "is taken as ONE person: the whole image padded to a square, and a warning says so."
        ),
        epilog=(
            "--boxes FILE takes a COCO detection results file (a JSON list of {image_id or "
            "file_name, category_id, bbox [x,y,w,h], score}; image_id matched to the COCO id in "
            "the image's file name; boxes of other categories than 1 left out), a JSON object "
            "{\"image file name\": [[x,y,w,h], ...]} or a CSV of image,x,y,w,h[,score] rows. "
            "OUT_DIR receives <name>.json, <name>.skeleton.png and <name>.heatmaps.png per image "
            "(and <name>.saliency.png with --saliency), "
            "and one results file per call (predictions.json, then predictions-2.json, ...), which "
            "never replaces another call's; it records the files predict wrote: a file there that "
            "predict did not write (a LabelMe <name>.json, say) is never replaced, the output "
            "takes a new name and its line says so. The outputs appear together at the end, or "
            "not at all. An unreadable image, or one whose box lies outside it, is reported in one "
            "line and skipped; the exit status is then 1. RUN_DIR may also be a registered model "
            "name (hgpose.runs.pretrained). Examples: hgpose predict runs/thesis --examples (the "
            "photos of several people that ship with hgpose, with their boxes); hgpose predict "
            "runs/thesis photos/ --boxes boxes.json; hgpose predict runs/thesis photo.jpg --box "
            "120,40,200,380; hgpose predict runs/thesis --examples --saliency --saliency-people 1 (what "
            "the network looks at for both wrists of the first person of each photo)"
        ),
    )
    _add_run(p)
    p.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR",
                   help="image files, or folders whose images (jpg, png, ...) are all used")
    p.add_argument("--boxes", default=None, metavar="FILE",
                   help="the person boxes of each image (formats below); every box is one person")
    p.add_argument("--box", type=_box, default=None, metavar="x,y,w,h",
                   help="one person's box in image pixels, used for every image")
    p.add_argument("--examples", action="store_true",
                   help="predict the example photos that ship with hgpose (three COCO photos of "
                        "several people, with their boxes): a first try without any data")
    p.add_argument("--out", default="predictions", metavar="DIR",
                   help="output folder (default: ./predictions)")
    _add_decoding(p)
    p.add_argument("--min-score", type=_min_score, default=0.25, metavar="FRACTION",
                   help="draw joints faded when their score is below this fraction of a "
                        "perfect target's peak (default: 0.25)")
    passes = occlusion_passes(PATCH, STRIDE)
    p.add_argument("--saliency", nargs="?", const=",".join(DEFAULT_JOINTS), default=None, metavar="JOINTS",
                   help="also write <name>.saliency.png: a row per person (the first "
                        f"{SALIENCY_PEOPLE} of each image; --saliency-people), its crop with the predicted "
                        "skeleton, then for each joint an occlusion map and a Grad-CAM map of the joint's "
                        "heatmap peak over that very crop, with their colour scale, as hgpose explain draws "
                        "them. JOINTS: comma-separated COCO names of joints the network was trained on (e.g. "
                        "left_wrist,right_ankle) or all; --saliency alone: "
                        f"{','.join(DEFAULT_JOINTS)}. Write the images before it (or --saliency=JOINTS). "
                        f"Cost per person: {passes} forward passes (occlusion, a {PATCH} px square every "
                        f"{STRIDE} px) plus a forward and a backward pass per joint (Grad-CAM): "
                        f"{passes + 2 * len(DEFAULT_JOINTS)} for two joints: about 8 s on one CPU core for "
                        "the cpu preset's network, 4 minutes for the full-width thesis network")
    p.add_argument("--saliency-people", type=_saliency_people, default=None, metavar="N",
                   help=f"with --saliency: explain the first N people of each image (default: {SALIENCY_PEOPLE})")
    _add_device(p)
    _add_precision(p)
    _add_max_pixels(p, "larger images are reported and skipped")
    _add_no_progress(p)


def _run_predict(args) -> int:
    from hgpose.predict import SALIENCY_PEOPLE, describe, predict, printable
    from hgpose.images import set_max_pixels

    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)

    def report(outcome) -> None:
        if outcome.ok:
            print(describe(outcome))
        else:
            print(f"hgpose predict: error: {describe(outcome)}", file=sys.stderr)

    def warn(text: str) -> None:
        print(f"hgpose predict: warning: {text}", file=sys.stderr)

    if args.saliency_people is not None and args.saliency is None:
        raise HgposeError("--saliency-people: give --saliency too (the joints to explain), or drop it")
    people = SALIENCY_PEOPLE if args.saliency_people is None else args.saliency_people
    summary = predict(
        args.run_dir, args.images, args.out, box=args.box, boxes=args.boxes, examples=args.examples,
        checkpoint=args.checkpoint, device=args.device, flip=args.flip, min_score=args.min_score,
        saliency=args.saliency, saliency_people=people, progress=args.progress,
        on_image=report, on_warning=warn, refine=args.refine, precision=args.precision,
    )
    if summary.summary_file is not None:
        print(printable(f"results: {summary.summary_file} ({summary.people} "
                        f"{'person' if summary.people == 1 else 'people'})"))
    if summary.failed:
        print(f"hgpose predict: {len(summary.failed)} of {len(summary.outcomes)} inputs failed",
              file=sys.stderr)
    return summary.exit_code


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained network to ONNX (dynamic batch axis)",
        description=(
            "Write the network as an ONNX graph: input float32 [batch, 3, 256, 256] RGB crops "
            "in [0, 1] (the mean-RGB subtraction is inside the graph), output float32 "
            "[batch, 17, 64, 64] heatmaps of the last stack. The codec, joint names, mean RGB "
            "and crop rule are stored in the model's metadata. Before the file takes its name it "
            "is run in ONNX Runtime and compared with the network in float64: above a tolerance "
            "from fp32 rounding, nothing is written and the command fails."
        ),
        epilog="Opsets: 9 to the newest for networks working at 256 px; 11 on for 64 and 128 px "
               "(the cpu preset); none for 192 px. Needs the onnx and onnxruntime packages. "
               "Example: hgpose export runs/thesis --onnx thesis.onnx",
    )
    _add_run(p)
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip running the exported file in ONNX Runtime and comparing it with "
                        "PyTorch (the known opset limits still apply)")


def _run_export(args) -> int:
    from hgpose.export import export_onnx

    info = export_onnx(args.run_dir, args.onnx, checkpoint=args.checkpoint, opset=args.opset,
                       verify=not args.no_verify)
    print(f"wrote {info['path']} ({info['bytes'] / 1e6:.1f} MB, opset {info['opset']}, network at "
          f"{info['resolution']} px) from {info['checkpoint']}")
    if info["max_abs_diff"] is not None:
        print(f"ONNX Runtime vs PyTorch on a batch of 2: max |difference| {info['max_abs_diff']:.2e} "
              f"(tolerance {info['tolerance']:.1e}, from fp32 rounding)")
    else:
        print("not verified (--no-verify)")
    return 0


COMMANDS = {
    "demo": (_add_demo, _run_demo),
    "prepare": (_add_prepare, _run_prepare),
    "synth": (_add_synth, _run_synth),
    "train": (_add_train, _run_train),
    "evaluate": (_add_evaluate, _run_evaluate),
    "explain": (_add_explain, _run_explain),
    "predict": (_add_predict, _run_predict),
    "export": (_add_export, _run_export),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `command` only that command's: a command's flags
    import what they describe (explain's, every registered part), which the others need not
    wait for."""
    parser = argparse.ArgumentParser(
        prog="hgpose",
        description=(
            "Stacked Hourglass human pose estimation on COCO, and tools to explain what the "
            "network learned. Run `hgpose COMMAND --help` for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"hgpose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add, _) in COMMANDS.items():
        if command is None or name == command:
            add(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command `argv` names (its first word not an option), if it is one; else None
    (`hgpose --help`, `hgpose --version`, a misspelt command: the whole parser answers)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None




def _error(line: str) -> None:
    """Print one error line; a path that is not valid UTF-8 (its bytes kept by Python as
    surrogates) is shown with escapes instead of failing to print."""
    print(line.encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that predict's images may also come after its options
    (`hgpose predict RUN --out DIR photo.jpg`): argparse fills a nargs="*" positional at its
    first chance and would call the later ones unrecognised."""
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "command", None) == "predict":
        args.images = [*args.images, *(e for e in extra if not e.startswith("-"))]
        extra = [e for e in extra if e.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = _parse(parser, argv)
    _, run = COMMANDS[args.command]
    try:
        return run(args)
    except HgposeError as e:
        _error(f"hgpose {args.command}: error: {e}")
        return 2
    except OSError as e:
        # The file system refused (read-only, full, a file in the way, ...): the user's to fix,
        # so one line naming the path where the error knows it (hgpose.io names the file it
        # was writing for a full disk) and what to check. The outputs are complete or absent.
        where = f"{e.filename}: " if e.filename else ""
        _error(f"hgpose {args.command}: error: {where}{e.strerror or e}; check that path (permissions, "
               "free space) or choose another, then run the same command again")
        return 2
    except KeyboardInterrupt:
        print(f"hgpose {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130

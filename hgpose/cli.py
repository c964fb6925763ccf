"""The `hgpose` command line: a thin layer over the Python API.

Each sub-command has an `_add_<name>` (its options and help) and a `_run_<name>` (calls the
API). Problems the user can fix surface as one line `hgpose <cmd>: error: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from hgpose import __version__
from hgpose.errors import HgposeError


def _test_size(text: str) -> float | int:
    """`--test-size`: an integer count, or a fraction in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count nor a fraction") from None
    if 0 < value < 1:
        return value
    if value >= 1 and value == int(value):
        return int(value)
    raise argparse.ArgumentTypeError(f"{text!r}: give a whole count >= 1 or a fraction in (0, 1)")


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="COCO 2017 -> thesis crops (256x256), train/val/test split, mean RGB",
        description=(
            "Cut one 256x256 crop per keypoint-annotated person of COCO 2017 with the thesis's "
            "crop rule, split them into train/val/test and compute the mean RGB of the training "
            "crops. Interrupted runs resume where they stopped when started again."
        ),
        epilog=(
            "COCO_ROOT must hold annotations/person_keypoints_{train,val}2017.json and the "
            "images in train2017/ and val2017/. OUT_DIR receives manifest.json and "
            "{train,val,test}/{images,keypoints,boxes,ids}.npy (see README, 'Dataset store')."
        ),
    )
    p.add_argument("coco_root", metavar="COCO_ROOT", help="folder with COCO 2017 in its own layout")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where the dataset store is written")
    p.add_argument(
        "--test-size", type=_test_size, default=5064, metavar="N|FRACTION",
        help="crops drawn from train2017 into the test split: a count, or a fraction in (0,1) "
             "for small data (default: 5064, as in the thesis)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the test draw (default: 0)")
    p.add_argument(
        "--workers", type=int, default=None,
        help="processes decoding and cropping images (default: the number of CPU cores)",
    )
    p.add_argument(
        "--keep-work", action="store_true",
        help="keep the intermediate shards in OUT_DIR/.work after success (default: delete them)",
    )


def _run_prepare(args) -> int:
    from hgpose.data.prepare import prepare, format_summary

    manifest = prepare(
        args.coco_root, args.out_dir, test_size=args.test_size, seed=args.seed,
        workers=args.workers, keep_work=args.keep_work,
    )
    print(format_summary(manifest))
    return 0


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
            "and val2017/*.jpg. Example: hgpose synth data/synth && hgpose prepare data/synth "
            "data/synth-store --test-size 0.2"
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
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice, >= 0 (default: 0)")
    p.add_argument(
        "--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"),
        help="image width and height in pixels (default: 640 480)",
    )
    p.add_argument(
        "--workers", type=int, default=None,
        help="processes drawing images; the output does not depend on it "
             "(default: the number of CPU cores; one per 32 images at most)",
    )


def _run_synth(args) -> int:
    from hgpose.synth import format_summary, generate

    summary = generate(
        args.out_dir, train_images=args.train_images, val_images=args.val_images,
        seed=args.seed, size=tuple(args.size), workers=args.workers,
    )
    print(format_summary(summary))
    return 0


COMMANDS = {
    "prepare": (_add_prepare, _run_prepare),
    "synth": (_add_synth, _run_synth),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hgpose",
        description=(
            "Stacked Hourglass human pose estimation on COCO, and tools to explain what the "
            "network learned. Run `hgpose COMMAND --help` for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"hgpose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _, run = COMMANDS[args.command]
    try:
        return run(args)
    except HgposeError as e:
        print(f"hgpose {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hgpose {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130

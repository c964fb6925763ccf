"""hgpose: Stacked Hourglass pose estimation on COCO, and tools to explain what it learned.

Pipeline, one stage per sub-package, data flowing one way:
    data/ -> codec -> models/ -> train/ -> evaluate/ -> explain/
with one inference core (inference/) below train/, evaluate/ and explain/.

Inference from Python: `est = hgpose.load(RUN_DIR_OR_CHECKPOINT); est.predict(image)`.
"""

__version__ = "0.1.0"


def load(source, *, checkpoint=None, device="auto", flip=False, refine=None, precision="auto",
         engine="auto"):
    """A trained network, ready for inference: `hgpose.inference.Estimator`.

    source: a run directory of `hgpose train` (its best checkpoint, or last if it has no
    best) or a .safetensors weights file; checkpoint: "best", "last" or a path; device:
    "auto", "cpu", "cuda", "cuda:N"; flip: average with the mirrored crop's heatmaps;
    refine: decode with "none", "quarter" or "dark" instead of the run's target.refine;
    precision: "auto" (bf16 where the CPU or GPU computes it natively), "bf16" or "fp32";
    engine: "auto" (ONNX Runtime for fp32 on a CPU, where installed) or "torch".

    Imported on first use, so `import hgpose` stays cheap (no torch) for the CLI.
    """
    from hgpose.inference import load as _load

    return _load(source, checkpoint=checkpoint, device=device, flip=flip, refine=refine,
                 precision=precision, engine=engine)

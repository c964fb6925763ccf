"""What a training run leaves on disk, read and written in one place.

    rundir.py   RunDir: the run folder's paths, the best/last rule (`resolve_checkpoint`),
                default output folders
    weights.py  the weights file (safetensors + the metadata that makes it usable alone)
    state.py    the resumable training state (state.pt) and its RNG states

Training writes these; evaluate, predict, export, explain and the inference core read them.
"""

from hgpose.runs.rundir import CHECKPOINT_NAMES, RunDir, default_eval_dir, resolve_checkpoint

__all__ = ["CHECKPOINT_NAMES", "RunDir", "default_eval_dir", "resolve_checkpoint"]

"""The run folder of `hgpose train` as a value object: every path in it, and one rule for
which weights file of a run a reader gets.

    RUN_DIR/config.json                  the resolved TrainConfig; --resume loads it back
    RUN_DIR/run.json                     data dir, --init, world size, versions, command
    RUN_DIR/metrics.csv                  one row per epoch; RUN_DIR/tb/ TensorBoard scalars
    RUN_DIR/checkpoints/state.pt         the resumable state (state.py)
    RUN_DIR/checkpoints/{best,last,epoch_NNN}.safetensors   weights files (weights.py)
    RUN_DIR/ae/                          thesis-ae only: the autoencoder's own run folder
    RUN_DIR/eval/<split>-<protocol>-<weights>[-flip]/        `hgpose evaluate`'s default output

Which weights a reader gets (evaluate, predict, export, explain, the Python API, thesis-ae
reading its own autoencoder run):

    RUN_DIR                     best.safetensors, or last.safetensors while the run has no
                                best yet (no finite validation metric so far)
    RUN_DIR + "best" / "last"   that file ("best" falls back to last as above)
    RUN_DIR + FILE              a path, or a file name inside RUN_DIR/checkpoints
    WEIGHTS.safetensors         that file; its run is RUN_DIR when it lies in RUN_DIR/checkpoints
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from hgpose.errors import HgposeError
from hgpose.io import LOCK_NAME

CHECKPOINT_NAMES = ("best", "last")
# hgpose.io's temporary names (".NAME.<8 random characters><suffix>.tmp") for the files a
# run writes: what a save killed mid-write (kill -9, power loss) leaves behind.
_TEMPORARY = re.compile(r"\.(config\.json|run\.json|metrics\.csv|state\.pt|[^/]+\.safetensors|(train|val)\.npy)"
                        r"\.[a-z0-9_]{8}(\.pt|\.safetensors|\.npy)?\.tmp")


@dataclass(frozen=True)
class RunDir:
    """One run folder. Knows its paths; reads nothing until asked."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def run_info_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tb"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def budget_path(self) -> Path:
        """`train --minutes`: the plan of a run trained for a wall-clock budget."""
        return self.path / "budget.json"

    @property
    def state_path(self) -> Path:
        return self.checkpoints / "state.pt"

    @property
    def autoencoder(self) -> "RunDir":
        """thesis-ae's autoencoder pre-training, a run folder of its own inside this one."""
        return RunDir(self.path / "ae")

    def weights(self, name: str) -> Path:
        """checkpoints/<name>.safetensors: "best", "last" or "epoch_NNN"."""
        return self.checkpoints / f"{name}.safetensors"

    def epoch_weights(self, epoch: int) -> Path:
        return self.weights(f"epoch_{epoch:03d}")

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def has_weights(self) -> bool:
        """Whether checkpoints/ holds a weights file (of any name)."""
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.safetensors"))

    def has_progress(self) -> bool:
        """Whether the folder holds training worth keeping: a saved state or weights (its
        own or its autoencoder's). A run that failed before its first save left at most
        config.json, which a new run may replace."""
        return any(any(folder.glob(pattern)) for folder in (self.checkpoints, self.autoencoder.checkpoints)
                   for pattern in ("state.pt", "*.safetensors"))

    def strangers(self) -> list[Path]:
        """What a new run in this folder would mix with or write over: every entry of it (its
        lock file aside), unless the folder is a run folder of `hgpose train` (its
        config.json says so: a run that failed before its first save)."""
        if not self.path.is_dir() or self._config_is_ours():
            return []
        return sorted(p for p in self.path.iterdir() if p.name != LOCK_NAME)

    def _config_is_ours(self) -> bool:
        """Whether config.json is a TrainConfig as `hgpose train` writes it (by its keys,
        so that one with a bad value still counts: loading it names the value)."""
        from hgpose.config import TrainConfig

        try:
            data = json.loads(self.config_path.read_text())
        except (OSError, ValueError):
            return False
        known = set(TrainConfig.__dataclass_fields__) | {"amp", "cpu_amp"}  # and the older precision keys
        return isinstance(data, dict) and "model" in data and set(data) <= known

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files hgpose's own writes left in this run folder when they
        were killed (see _TEMPORARY); only while the run's lock is held. Returns them."""
        folders = (self.path, self.checkpoints, self.autoencoder.path, self.autoencoder.checkpoints,
                   self.autoencoder.path / "latents")
        found = [p for folder in folders if folder.is_dir() for p in folder.iterdir()
                 if p.is_file() and _TEMPORARY.fullmatch(p.name)]
        for path in found:
            path.unlink(missing_ok=True)
        return found

    def load_config(self):
        """The run's TrainConfig (validated)."""
        from hgpose import config as cfg

        return cfg.load(self.config_path)

    def resolve(self, which: str | Path | None = None) -> Path:
        """The weights file `which` names (see the module docstring); one line if none fits."""
        which = "best" if which is None else str(which)
        if which in CHECKPOINT_NAMES:
            names = ("best", "last") if which == "best" else ("last",)
            for name in names:
                if self.weights(name).is_file():
                    return self.weights(name)
            tried = " or ".join(f"{name}.safetensors" for name in names)
            raise HgposeError(f"{self.checkpoints}: no {tried} — is {self.path} a run directory of "
                              "`hgpose train` that finished at least one epoch?")
        for path in (Path(which), self.checkpoints / which):
            if path.is_file():
                return path
        raise HgposeError(f"--checkpoint {which}: not found (as a path, or in {self.checkpoints})")

    def eval_dir(self, split: str, protocol: str, weights: Path, flip: bool) -> Path:
        """Where `hgpose evaluate` writes by default: one folder per split, protocol, weights
        file and flip test, so evaluations never overwrite each other."""
        return self.path / "eval" / f"{split}-{protocol}-{Path(weights).stem}{'-flip' if flip else ''}"

    @classmethod
    def of_weights(cls, weights: str | Path) -> "RunDir | None":
        """The run a weights file belongs to: RUN_DIR when it lies in RUN_DIR/checkpoints."""
        run = cls(Path(weights).parent.parent)
        return run if Path(weights).parent.name == "checkpoints" and run.is_run() else None


def resolve_checkpoint(source: str | Path, which: str | Path | None = None) -> tuple[Path, RunDir | None]:
    """(weights file, its run or None) for a run folder or a weights file (module docstring)."""
    from hgpose.runs.pretrained import PRETRAINED, weights_of

    if not Path(source).exists() and str(source) in PRETRAINED:
        if which is not None:
            raise HgposeError(f"--checkpoint applies to a run directory; {source} is a registered model")
        return weights_of(str(source)), None
    source = Path(source)
    if source.is_file():
        if which is not None:
            raise HgposeError(f"{source} is a weights file; --checkpoint only applies to a run directory")
        return source, RunDir.of_weights(source)
    if not source.is_dir():
        names = ", ".join(PRETRAINED) or "none yet"
        raise HgposeError(f"{source}: not found — give a run directory of `hgpose train`, a .safetensors "
                          f"weights file or a registered model name ({names})")
    return RunDir(source).resolve(which), RunDir(source)


def default_eval_dir(weights: Path, run: RunDir | None, split: str, protocol: str, flip: bool) -> Path:
    """`hgpose evaluate`'s default output: in the run's eval/ folder, or beside a weights file
    that belongs to no run."""
    return (run or RunDir(Path(weights).parent)).eval_dir(split, protocol, weights, flip)

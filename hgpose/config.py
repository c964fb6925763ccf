"""Typed run configuration: the network, codec and training of a run, the presets,
`--set key=value` overrides, JSON I/O.

A run is fully described by one `TrainConfig` (saved as RUN_DIR/config.json) plus its seed:
the presets are plain functions returning configs with SPEC §4's values, and every field can
be changed from the command line with a dotted path (`--set model.features=64`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from hgpose.errors import HgposeError


@dataclass
class ModelConfig:
    name: str = "thesis"          # a key of hgpose.models.MODELS: "thesis" (SPEC §3) | "newell"
    features: int = 256
    stacks: int = 8               # newell only; the thesis network has exactly one hourglass
    autoencoder: bool = False     # thesis only: the 50-dim AE after the 3rd bottleneck residual
    # The size the network works at (beyond the thesis): the 256x256 crop is area-downscaled
    # to it and the heatmaps brought back to the 64x64 grid. 128 costs a quarter of 256.
    resolution: int = 256


@dataclass
class DataConfig:
    workers: int = 2              # DataLoader processes reading crops from the memory maps (CUDA;
                                  # training on the CPU reads them in its own process: loop.loader_workers)
    shuffle: bool = True
    train_limit: int = 0          # use only the first N training crops (0 = all): quick runs
    val_limit: int = 0            # same for validation
    val_batch_size: int = 32


@dataclass
class AugmentConfig:
    """Batched on the training device; one affine warp per sample (image and keypoints)."""

    enabled: bool = False
    rotation: float = 30.0        # degrees, uniform in [-rotation, rotation]
    scale_min: float = 0.75
    scale_max: float = 1.25
    flip: float = 0.5             # probability of a horizontal flip (left/right joints swapped)
    colour: float = 0.2           # brightness, contrast and saturation factors in 1 ± colour
    half_body: float = 0.0        # probability of a view of the upper or lower body alone (HRNet)


@dataclass
class TargetConfig:
    codec: str = "thesis"         # a key of hgpose.codecs.CODECS: "thesis" (SPEC §2) | "gaussian"
    sigma: float = 1.0            # gaussian codec only, heatmap px
    # How decoding refines the argmax (evaluate, predict, export and the saved weights use
    # it): "auto" = the codec's own rule (thesis: plain argmax, SPEC §2; gaussian: the
    # quarter-pixel shift) | "none" | "quarter" | "dark" (Taylor refinement, DARK). The
    # thesis codec only decodes by argmax, so with it only "auto" and "none" are accepted.
    refine: str = "auto"
    weighted: bool = False        # multiply the loss by the codec's per-joint weights
    all_stacks: bool = True       # intermediate supervision: a loss on every stack's output
    # Extra loss weight on the joints' peaks: each pixel's squared error is multiplied by
    # 1 + foreground * target. 0 (every preset) is plain MSE. Short runs escape the
    # "predict zero everywhere" plateau of heatmap MSE much sooner with it (e.g. 20).
    foreground: float = 0.0


@dataclass
class OptimConfig:
    name: str = "rmsprop"         # "rmsprop" | "adam" | "sgd"
    lr: float = 2.5e-4
    alpha: float = 0.99           # rmsprop smoothing
    momentum: float = 0.0         # rmsprop and sgd
    weight_decay: float = 0.0
    schedule: str = "plateau"     # "plateau" (on the validation metric) | "step" | "linear" | "none"
    plateau_factor: float = 0.2
    plateau_patience: int = 5
    min_lr: float = 5e-5
    warmup_steps: int = 0         # linear warm-up from 0 over this many optimizer steps
    step_epochs: tuple[int, ...] = ()  # "step": multiply lr by step_gamma at these epochs ...
    step_every: int = 0           # ... and/or every this many epochs (0 = never)
    step_gamma: float = 0.1


@dataclass
class AEConfig:
    """thesis-ae recipe: pre-train the autoencoder alone on saved latents (SPEC §4)."""

    epochs: int = 100
    batch_size: int = 16
    noise: float = 0.1            # input x + noise * x * N(0, 1)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="sgd", lr=5e-4, momentum=0.9, schedule="step", step_every=25, step_gamma=0.5,
        min_lr=0.0))


@dataclass
class TrainConfig:
    preset: str = "thesis"        # where the values came from (informational)
    recipe: str = "pose"          # "pose" | "thesis-ae" (AE pre-training, then pose fine-tuning)
    seed: int = 0
    epochs: int = 100             # pose training (for thesis-ae: the end-to-end fine-tuning)
    batch_size: int = 16          # per process under DDP
    flip_test: bool = False       # validate on the average of image and flipped-image heatmaps
    device: str = "auto"          # "auto" | "cpu" | "cuda" | "cuda:N"
    # Autocast of the forward passes, the one vocabulary of training and inference
    # (hgpose.inference.device): "auto" = bf16 where the device computes it natively (a CPU
    # with AMX / AVX-512-BF16, read at run time; a CUDA GPU with bf16), fp32 elsewhere |
    # "bf16" (refused where not native) | "fp16" (CUDA, with loss scaling) | "fp32".
    # Weights stay fp32. The thesis presets are fp32 (SPEC §4).
    precision: str = "auto"
    channels_last: bool = True    # NHWC memory layout (faster with cuDNN and with oneDNN on CPU)
    compile: bool = False         # torch.compile the model (CUDA)
    deterministic: bool = False   # torch.use_deterministic_algorithms (slower; exact reruns)
    save_every_steps: int = 0     # also save a resumable state every N steps (0 = epoch ends only)
    keep_epoch_checkpoints: bool = True  # epoch_NNN.safetensors besides last/best
    progress: bool = True         # tqdm bar (rank 0)
    tensorboard: bool = True
    log_every: int = 20           # TensorBoard train-loss scalar every N steps
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ae: AEConfig = field(default_factory=AEConfig)


# --- presets -------------------------------------------------------------------------------

def thesis() -> TrainConfig:
    """SPEC §4 exactly: MSE on thesis heatmaps, batch 16, RMSprop, plateau schedule on PCK,
    fp32 on every device."""
    return TrainConfig(
        preset="thesis",
        epochs=100,
        batch_size=16,
        precision="fp32",         # as in the thesis, on every device; --precision auto to speed up
        model=ModelConfig(name="thesis", features=256, stacks=1),
        target=TargetConfig(codec="thesis", weighted=False),
        augment=AugmentConfig(enabled=False),
        optim=OptimConfig(
            name="rmsprop", lr=2.5e-4, alpha=0.99, momentum=0.0, weight_decay=0.0,
            schedule="plateau", plateau_factor=0.2, plateau_patience=5, min_lr=5e-5,
        ),
    )


def newell() -> TrainConfig:
    """The modern recipe (beyond the thesis): 8 stacks, Gaussian targets, augmentation, Adam."""
    return TrainConfig(
        preset="newell",
        epochs=100,
        batch_size=16,
        flip_test=True,
        precision="auto",
        model=ModelConfig(name="newell", features=256, stacks=8),
        target=TargetConfig(codec="gaussian", sigma=1.0, weighted=True, all_stacks=True),
        augment=AugmentConfig(enabled=True),
        optim=OptimConfig(
            name="adam", lr=1e-3, schedule="step", warmup_steps=1000,
            step_epochs=(70, 90), step_gamma=0.1, min_lr=0.0,
        ),
    )


def cpu() -> TrainConfig:
    """Real people on a CPU in an hour (beyond the thesis): a 2-stack Newell hourglass at
    128 features working at 128x128, Gaussian sigma-2 targets with a peak weight, light
    augmentation, Adam at 2e-3 on batches of 8 with a step decay, bf16 where the CPU has it,
    flip test. Each choice was measured on LSPET: see docs/training.md, "Training on a CPU"."""
    return TrainConfig(
        preset="cpu",
        epochs=24,
        batch_size=8,      # twice the optimiser steps per crop: learns faster per CPU minute
        flip_test=True,
        precision="auto",
        keep_epoch_checkpoints=False,
        model=ModelConfig(name="newell", features=128, stacks=2, resolution=128),
        data=DataConfig(workers=1),
        # sigma 3 learns faster in the first 15,000 crops but was no better after an hour
        # (docs/training.md, "Target width"), so the preset keeps 2.
        target=TargetConfig(codec="gaussian", sigma=2.0, weighted=True, all_stacks=True, foreground=20.0),
        # Light: an hour on 7,500 crops underfits, and the crops are tight (joints' extent
        # x 1.1), so a strong zoom pushes limbs out of the frame.
        augment=AugmentConfig(enabled=True, rotation=15.0, scale_min=0.85, scale_max=1.15),
        optim=OptimConfig(name="adam", lr=2e-3, schedule="step", warmup_steps=200,
                          step_epochs=(16, 20), step_gamma=0.1, min_lr=0.0),
    )


def thesis_ae() -> TrainConfig:
    """SPEC §4 AE recipe: AE pre-training (ae.*), then ~20 epochs of the thesis recipe."""
    config = thesis()
    config.preset = "thesis-ae"
    config.recipe = "thesis-ae"
    config.epochs = 20
    config.model.autoencoder = True
    return config


PRESETS = {"thesis": thesis, "newell": newell, "thesis-ae": thesis_ae, "cpu": cpu}

# How decoding refines the heatmap argmax (target.refine, --refine): the vocabulary every
# codec chooses from (each lists the ones it knows: hgpose.codecs).
REFINEMENTS = {
    "auto": "the codec's own rule",
    "none": "plain argmax",
    "quarter": "a quarter pixel toward the higher neighbour",
    "dark": "DARK's Taylor step",
}
# Autocast of the forward passes, for training and inference alike (hgpose.inference.device).
PRECISIONS = ("auto", "bf16", "fp16", "fp32")

# Allowed values of the string fields, checked after overrides. Model and codec names are
# checked against their registries (hgpose.models.MODELS, hgpose.codecs.CODECS).
CHOICES = {
    "recipe": ("pose", "thesis-ae"),
    "precision": PRECISIONS,
    "target.refine": tuple(REFINEMENTS),
    "optim.name": ("rmsprop", "adam", "sgd"),
    "optim.schedule": ("plateau", "step", "linear", "none"),
    "ae.optim.name": ("rmsprop", "adam", "sgd"),
    "ae.optim.schedule": ("step", "none"),
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise HgposeError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


# --- overrides -----------------------------------------------------------------------------

def _hints(cls) -> dict[str, typing.Any]:
    # get_type_hints resolves the string annotations of `from __future__ import annotations`.
    return typing.get_type_hints(cls)


def valid_keys(cls=TrainConfig, prefix: str = "") -> list[str]:
    keys = []
    for name, hint in _hints(cls).items():
        if dataclasses.is_dataclass(hint):
            keys += valid_keys(hint, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _parse(text: str, hint, key: str):
    """A command-line string as a value of the field's type."""
    try:
        if hint is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint in (int, float, str):
            return hint(text)
        if typing.get_origin(hint) is tuple:  # tuple[int, ...]: "70,90" (empty string = ())
            (item, _) = typing.get_args(hint)
            return tuple(item(part) for part in text.split(",") if part.strip())
    except ValueError as e:
        raise HgposeError(f"--set {key}={text}: not a valid {getattr(hint, '__name__', hint)} ({e})") from None
    raise TypeError(f"config field {key} has unsupported type {hint}")


def apply_override(config: TrainConfig, assignment: str) -> None:
    """Apply one `key=value` (dotted key) in place."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep:
        raise HgposeError(f"--set {assignment!r}: expected key=value, e.g. --set model.features=64")
    target = config
    *parents, leaf = key.split(".")
    for part in parents:
        if not (dataclasses.is_dataclass(target) and part in _hints(type(target))
                and dataclasses.is_dataclass(getattr(target, part))):
            target = None
            break
        target = getattr(target, part)
    hints = _hints(type(target)) if target is not None else {}
    if leaf not in hints or dataclasses.is_dataclass(hints[leaf]):
        raise HgposeError(
            f"--set {key}: unknown config key; valid keys: {', '.join(valid_keys())}"
        )
    setattr(target, leaf, _parse(text, hints[leaf], key))


def resolve(name: str = "thesis", overrides: typing.Iterable[str] = (), *,
            epochs: int | None = None, batch_size: int | None = None) -> TrainConfig:
    """Preset, then `--set` overrides, then the --epochs/--batch-size shortcuts; validated."""
    config = preset(name)
    return update(config, overrides, epochs=epochs, batch_size=batch_size)


def update(config: TrainConfig, overrides: typing.Iterable[str] = (), *,
           epochs: int | None = None, batch_size: int | None = None) -> TrainConfig:
    for assignment in overrides:
        apply_override(config, assignment)
    if epochs is not None:
        config.epochs = epochs
    if batch_size is not None:
        config.batch_size = batch_size
    validate(config)
    return config


def _hint_of(key: str):
    """The type annotation of a dotted config key."""
    cls = TrainConfig
    *parents, leaf = key.split(".")
    for part in parents:
        cls = _hints(cls)[part]
    return _hints(cls)[leaf]


def get_value(config, key: str):
    """The value of a dotted key ("optim.lr") in a config."""
    for part in key.split("."):
        config = getattr(config, part)
    return config


# Ranges of the numeric fields, checked after their types (`_check_ranges`); both optimisers
# (optim.* and ae.optim.*) follow the same rules. The upper limits are where a value stops
# meaning anything, or where training would fail later (a library error, a NaN).
SEED_LIMIT = 2**32 - 1    # numpy's seed range: the run seeds numpy, python and torch with it
# 20 in the cpu preset; 1000 already weighs a peak pixel 1000 times the background, and far
# larger weights overflow fp32 (1e308 turned the first loss into NaN).
FOREGROUND_LIMIT = 1000.0
SIGMA_LIMIT = 64.0        # the heatmap grid is 64 cells wide: a wider Gaussian is flat
AT_LEAST_ZERO = ("seed", "data.workers", "data.train_limit", "data.val_limit", "augment.rotation", "augment.colour",
                 "ae.noise", "ae.epochs", "save_every_steps")
AT_LEAST_ONE = ("epochs", "batch_size", "model.features", "data.val_batch_size", "ae.batch_size", "log_every")
OPTIM_AT_LEAST_ZERO = ("min_lr", "weight_decay", "plateau_patience", "warmup_steps", "step_every")
ABOVE_ZERO = ("target.sigma", "augment.scale_min")
OPTIM_ABOVE_ZERO = ("lr", "step_gamma")


def validate(config: TrainConfig) -> None:
    """Every field of `config` (from the command line, config.json or a weights file's
    metadata): its type, its range, its vocabulary, and the combinations that cannot run."""
    _check_types(config)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", config.device):
        raise HgposeError(f"config device={config.device!r}: choose auto, cpu, cuda or cuda:N")
    _check_ranges(config)
    for key, allowed in CHOICES.items():
        value = get_value(config, key)
        if value not in allowed:
            raise HgposeError(f"config {key}={value!r}: choose one of {', '.join(allowed)}")
    _check_registered(config)
    if config.recipe == "thesis-ae" and not config.model.autoencoder:
        raise HgposeError("config recipe=thesis-ae needs model.autoencoder=true")
    if not config.augment.scale_min <= config.augment.scale_max:
        raise HgposeError("config augment.scale_min must not exceed augment.scale_max")


def _check_types(config: TrainConfig) -> None:
    # Types first (a config.json edited by hand may hold "features": "eight"), so that the
    # range checks compare numbers with numbers.
    for key in valid_keys():
        hint, value = _hint_of(key), get_value(config, key)
        ok = (isinstance(value, bool) if hint is bool
              else isinstance(value, (int, float)) and not isinstance(value, bool) if hint is float
              else isinstance(value, int) and not isinstance(value, bool) if hint is int
              else isinstance(value, str) if hint is str
              else isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        if not ok:
            kind = {bool: "true or false", float: "a number", int: "a whole number", str: "a string"}
            raise HgposeError(f"config {key}={value!r}: must be {kind.get(hint, 'a list of whole numbers')}")
        if hint is float and not math.isfinite(value):
            raise HgposeError(f"config {key}={value}: must be a finite number")


def _check_ranges(config: TrainConfig) -> None:
    def fail(key: str, rule: str):
        raise HgposeError(f"config {key}={get_value(config, key)}: {rule}")

    optims = ("optim.", "ae.optim.")
    for key in AT_LEAST_ZERO + tuple(p + k for p in optims for k in OPTIM_AT_LEAST_ZERO):
        if get_value(config, key) < 0:
            fail(key, "must be at least 0")
    for key in AT_LEAST_ONE:
        if get_value(config, key) < 1:
            fail(key, "must be at least 1")
    for key in ABOVE_ZERO + tuple(p + k for p in optims for k in OPTIM_ABOVE_ZERO):
        if not get_value(config, key) > 0:
            fail(key, "must be greater than 0")
    for prefix in optims:
        # torch accepts these and then diverges (alpha > 1 takes the root of a negative
        # average) or refuses them mid-run (ReduceLROnPlateau: factor >= 1).
        if not 0 < get_value(config, prefix + "plateau_factor") < 1:
            fail(prefix + "plateau_factor", "the plateau schedule's lr factor must be between 0 and 1 (exclusive)")
        for key in ("alpha", "momentum"):
            if not 0 <= get_value(config, prefix + key) < 1:
                fail(prefix + key, "must be at least 0 and below 1")
    if config.seed > SEED_LIMIT:
        fail("seed", f"must be at most {SEED_LIMIT} (2**32 - 1, numpy's seed range)")
    if not 0 <= config.target.foreground <= FOREGROUND_LIMIT:
        fail("target.foreground", f"must be between 0 and {FOREGROUND_LIMIT:g} (the cpu preset uses 20)")
    if config.target.sigma > SIGMA_LIMIT:
        fail("target.sigma", f"must be at most {SIGMA_LIMIT:g} heatmap px (the grid is 64 wide)")
    for key in ("augment.flip", "augment.half_body"):
        if not 0 <= get_value(config, key) <= 1:
            fail(key, "a probability, between 0 and 1")
    if config.augment.colour > 1:  # the jitter's factors are 1 ± colour: none may turn negative
        fail("augment.colour", "must be at most 1 (factors 1 ± colour)")


def _check_registered(config: TrainConfig) -> None:
    """The model and the codec check their own settings (their registries own the names)."""
    from hgpose.codecs import CODECS, refine_problem
    from hgpose.models import model_problem

    model = model_problem(config.model)
    if model:
        raise HgposeError(f"config {model}")
    if config.target.codec not in CODECS:
        raise HgposeError(f"config target.codec={config.target.codec!r}: choose one of {', '.join(CODECS)}")
    problem = refine_problem(config.target.codec, config.target.refine)
    if problem:
        raise HgposeError(f"config target.refine={config.target.refine}: the {config.target.codec} codec {problem}")


# --- JSON ----------------------------------------------------------------------------------

def to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def from_dict(data: dict, cls=TrainConfig, where: str = "config"):
    """Inverse of `to_dict`; missing keys keep their defaults, unknown keys are an error."""
    if not isinstance(data, dict):
        raise HgposeError(f"{where}: expected an object, got {type(data).__name__}")
    if cls is TrainConfig:
        data = _migrated(data)
    hints = _hints(cls)
    unknown = set(data) - set(hints)
    if unknown:
        raise HgposeError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(value, hint, f"{where}.{name}")
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            values[name] = tuple(value)  # anything else stays as it is, for validate to name
        elif hint is float and isinstance(value, int):
            values[name] = float(value)
        else:
            values[name] = value
    return cls(**values)


def section_from_dict(name: str, data, where: str):
    """One section of a run's config ("model", "target") recorded elsewhere, such as a
    weights file's metadata, read and checked by the rules of a whole config (its other
    sections at their defaults): HgposeError naming `where` ("FILE: metadata") and the field."""
    section = from_dict(data, _hints(TrainConfig)[name], f"{where} {name}")
    try:
        validate(TrainConfig(**{name: section}))
    except HgposeError as e:
        raise HgposeError(f"{where} {str(e).removeprefix('config ')}") from None
    return section


def _migrated(data: dict) -> dict:
    """A config written before training and inference shared one precision vocabulary, when
    it said `amp` (CUDA: bf16 | fp16 | none) and `cpu_amp` (auto | bf16 | none): fp16 stays
    fp16, none on both devices is fp32, anything else was bf16 where native, i.e. auto."""
    if "amp" not in data and "cpu_amp" not in data:
        return data
    data = dict(data)
    amp, cpu_amp = data.pop("amp", "none"), data.pop("cpu_amp", "auto")
    if "precision" not in data:
        data["precision"] = ("fp16" if amp == "fp16" else
                             "fp32" if (amp, cpu_amp) == ("none", "none") else "auto")
    return data


def save(config: TrainConfig, path: str | Path) -> None:
    from hgpose.io import write_json

    write_json(path, to_dict(config))


def load(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HgposeError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise HgposeError(f"{path}: not valid JSON ({e})") from None
    config = from_dict(data, TrainConfig, str(path))
    validate(config)
    return config

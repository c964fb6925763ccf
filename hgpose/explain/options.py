"""The options of one `hgpose explain` call: those every part shares, and each part's own.

`ExplainOptions.parts` maps a part's name to its Options dataclass (`hgpose.explain.protocol`);
`hgpose.explain.parts.default_options` fills in every registered part's defaults. Every
option also has a flat name, unique across the common options and all parts, which
`explain(..., name=value)`, the command line and explain.json's "options" use: `replace`
routes a flat name to the common options or to the part whose Options has that field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields


def comma_list(text) -> tuple[str, ...]:
    """"a, b" -> ("a", "b"); a tuple or list passes through as a tuple."""
    if isinstance(text, str):
        return tuple(v.strip() for v in text.split(",") if v.strip())
    return tuple(text)


@dataclass
class ExplainOptions:
    """The options all parts share; each part's own are its Options in `parts` (name -> Options)."""

    split: str = "train"
    layer: str | None = None              # default: the model's latent_layer
    checkpoint: str | None = None         # None = best (else last) | best | last | a file in RUN_DIR/checkpoints | a path
    only: tuple[str, ...] = ()            # parts to run; () = every part that runs by default
    cache_dir: str | None = None          # latents cache; default REPORT_DIR/latents
    device: str = "auto"
    precision: str = "auto"               # forward passes: auto | bf16 | fp16 | fp32 (hgpose.inference.device)
    batch_size: int = 32
    workers: int = 0                      # DataLoader processes reading crops
    limit: int = 0                        # use the first N crops of the split (0 = all)
    seed: int = 0                         # K-means, the silhouette sample, drawings, random crops
    progress: bool = True
    parts: dict = field(default_factory=dict)   # part name -> its Options

    def __post_init__(self):
        self.only = comma_list(self.only)   # "pca,kmeans" from Python callers, as on the command line

    def asks(self, part: str) -> bool:
        """Whether this call asks for `part`: named by --only, or --only not given (a part that
        runs only when named also checks that it was named: its `wanted`)."""
        return not self.only or part in self.only

    @classmethod
    def common_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "parts"]

    def replace(self, **changes) -> ExplainOptions:
        """A copy with `changes` (flat names) applied, each to the common options or to the
        part in `parts` whose Options has that field."""
        owners = {name: None for name in self.common_names()}
        for part, options in self.parts.items():
            owners.update({f.name: part for f in fields(options)})
        unknown = sorted(set(changes) - set(owners))
        if unknown:
            raise TypeError(f"unknown explain option(s) {', '.join(unknown)}; the options are {', '.join(owners)}")
        parts = {part: dataclasses.replace(options, **{k: v for k, v in changes.items() if owners[k] == part})
                 for part, options in self.parts.items()}
        common = {k: v for k, v in changes.items() if owners[k] is None}
        return dataclasses.replace(self, **common, parts=parts)

    def flat(self) -> dict:
        """Every option by its flat name, tuples as lists: explain.json's "options"."""
        values = {name: getattr(self, name) for name in self.common_names()}
        for part_options in self.parts.values():
            values.update(asdict(part_options))
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}

"""The analyses of `hgpose explain`, registered: name -> the part's module, in run order.

Adding an analysis is its module (the protocol: `hgpose.explain.protocol`) and one line in
`PARTS`. The pipeline, the command line, the report and the terminal summary read this dict
and nothing else.
"""

from __future__ import annotations

from dataclasses import fields

from hgpose.explain import ablation, cka, compare, factors, kmeans, pca, probes, saliency
from hgpose.explain.options import ExplainOptions
from hgpose.explain.protocol import Part

PARTS: dict[str, Part] = {
    "pca": pca,
    "kmeans": kmeans,
    "ablation": ablation,
    "saliency": saliency,
    "compare": compare,
    "factors": factors,
    "probes": probes,
    "cka": cka,
}


def default_options(options: ExplainOptions | None = None) -> ExplainOptions:
    """`options` (default: all defaults) with every registered part's Options present: those
    not given take their defaults."""
    options = options or ExplainOptions()
    parts = {name: options.parts.get(name) or part.Options() for name, part in PARTS.items()}
    return ExplainOptions(**{name: getattr(options, name) for name in options.common_names()}, parts=parts)


def option_owners() -> dict[str, str | None]:
    """Each flat option name -> the registered part whose Options has it (None: common). Two
    owners of one name is a programming error, found here (a test calls it)."""
    owners: dict[str, str | None] = {name: None for name in ExplainOptions.common_names()}
    for name, part in PARTS.items():
        for f in fields(part.Options):
            if f.name in owners:
                raise ValueError(f"option {f.name!r} of part {name!r} is already an option of "
                                 f"{owners[f.name] or 'ExplainOptions'}; option names must be unique")
            owners[f.name] = name
    return owners


def selectable_parts() -> list[str]:
    """The parts --only can name."""
    return [name for name, part in PARTS.items() if part.SELECTABLE]

"""The explain part protocol: what every analysis of `hgpose explain` provides.

An analysis (PCA, K-means, the skip ablation, ...) is one module, registered by one line in
`hgpose.explain.parts.PARTS` (name -> module; the dict's order is the run order). The
pipeline, the command line, the report and the terminal summary only ever go through these
names, so an analysis owns everything about itself in its module and its report fragment:

    Options       a dataclass of the part's own options, every field with a default. The field
                  names are the flat names `explain(..., name=value)` accepts and explain.json's
                  "options" records, so they are unique across all parts and the common options.
        check(self, options)         raise HgposeError naming the flag and what to do
                                     (`options` is the whole ExplainOptions: `--only` etc.)
        add_arguments(cls, parser)   a classmethod adding its flags, dest = the field name,
                                     default (and the default in --help) read from the class
    TITLE         the report's navigation label of its section
    TEMPLATE      its report fragment (a Jinja2 file, HTML autoescaped), rendered when
                  explain.json has its section, with `r` (explain.json), `img` (figure path ->
                  data URI), `labels` (subset names) and `thesis` in scope; its <h2> has
                  id="<name>", the navigation's anchor
    SELECTABLE    whether `--only` can name it
    wanted(ctx) -> bool          whether it runs in this call (`ctx.asked(name)` is the usual answer)
    run(ctx) -> dict | None      its explain.json section (numbers, figure paths relative to
                                 REPORT_DIR), or None for no section
    summary_lines(section, result) -> list[str]   its lines of the terminal summary
    check_network(options, checkpoint)   optional: refuse options the network contradicts (a
                                 layer it lacks, a joint it was not trained on) once the
                                 checkpoint is read, before the latents pass

`ctx` is the `hgpose.explain.context.Context` of the call.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hgpose.errors import HgposeError

if TYPE_CHECKING:
    from hgpose.explain.context import Context

# Beside report.html.j2, so that the package data (templates/*.j2) ships them.
FRAGMENTS = Path(__file__).parent / "templates"


class PartOptions(Protocol):
    def check(self, options) -> None: ...

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None: ...


class Part(Protocol):
    """A registered analysis (in practice a module; see the module docstring)."""

    Options: type[PartOptions]
    TITLE: str
    TEMPLATE: Path
    SELECTABLE: bool

    def wanted(self, ctx: Context) -> bool: ...

    def run(self, ctx: Context) -> dict | None: ...

    def summary_lines(self, section: dict, result: dict) -> list[str]: ...


@dataclass
class NoOptions:
    """The Options of a part that has none of its own (it uses the common ones)."""

    def check(self, options) -> None:
        return None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        return None


def fragment(name: str) -> Path:
    """The report fragment of a part shipped with hgpose: templates/part-<name>.html.j2."""
    return FRAGMENTS / f"part-{name}.html.j2"


def flag(name: str) -> str:
    """The command-line spelling of an option field: k_min -> --k-min."""
    return "--" + name.replace("_", "-")


def require_at_least_one(options, names: tuple[str, ...]) -> None:
    """Counts the user sets (restarts, crops, ...) that must be 1 or more."""
    for name in names:
        value = getattr(options, name)
        if value < 1:
            raise HgposeError(f"{flag(name)} {value}: must be at least 1")

"""The dataset formats `hgpose prepare` reads, each mapped into COCO-17 people to crop.

One module per format (`coco.py`, `lsp.py`), each a `DatasetFormat` (base.py) that owns its
layout, its reading, its parts, joints and split rule, its default split sizes, the
annotation file each split is scored against and the folder of its original images.
`FORMATS` is the registry: prepare, evaluate and the store look a format up here by the
name recorded in the manifest and never compare format names themselves. Adding a format is
one module and one line in `FORMATS` (docs/architecture.md, "How to add a dataset format").

A SOURCE on the command line is `name:PATH` (a key of FORMATS) or a bare PATH, whose format
is detected by asking each format, in registry order, whether the folder looks like it.
"""

from __future__ import annotations

from pathlib import Path

from hgpose.data.formats.base import DatasetFormat, ImageTask, Part, Source, derived_annotation_path
from hgpose.data.formats.coco import CocoFormat
from hgpose.data.formats.lsp import LspFormat
from hgpose.errors import HgposeError

FORMATS: dict[str, DatasetFormat] = {"coco": CocoFormat(), "lsp": LspFormat()}
MAX_SOURCES = 256  # source.npy is uint8

__all__ = ["FORMATS", "DatasetFormat", "ImageTask", "Part", "Source", "derived_annotation_path",
           "detect", "parse_spec", "read_sources"]


def parse_spec(text: str) -> tuple[str | None, Path]:
    """"coco:PATH" | "lsp:PATH" (any key of FORMATS) | "PATH" (format detected)
    -> (format name or None, path)."""
    head, sep, rest = text.partition(":")
    if sep and head in FORMATS:
        return head, Path(rest)
    return None, Path(text)


def _folders() -> str:
    """"a COCO root or an LSP folder": every format's folder, for error messages."""
    return " or ".join(f.folder for f in FORMATS.values())


def _prefixes(joiner: str) -> str:
    return joiner.join(f"{name}:PATH" for name in FORMATS)


def detect(path: Path) -> str:
    """The name of the format whose layout the folder has (the first in FORMATS that fits)."""
    if not path.is_dir():
        raise HgposeError(f"{path}: not a folder — give {_folders()} (optionally as {_prefixes(' or ')})")
    for name, fmt in FORMATS.items():
        if fmt.looks_like(path):
            return name
    layouts = " nor ".join(f"{f.folder} ({f.layout})" for f in FORMATS.values())
    raise HgposeError(f"{path}: neither {layouts}; point at one of those, or name the format as "
                      f"{_prefixes(' / ')}")


def read_sources(specs: list[str | Path]) -> list[Source]:
    """Every source of a prepare command, validated before anything is written."""
    if not specs:
        raise HgposeError(f"give at least one SOURCE folder ({_folders()})")
    if len(specs) > MAX_SOURCES:
        raise HgposeError(f"{len(specs)} SOURCE folders: a store holds at most {MAX_SOURCES} "
                          "(each crop records its source in one byte, source.npy)")
    sources, names, seen = [], set(), {}
    for spec in specs:
        name, path = parse_spec(str(spec))
        name = name or detect(path)
        if not path.is_dir():
            raise HgposeError(f"{path}: not a folder — give the {name} dataset's root folder")
        if path.resolve() in seen:  # its people would be in the store twice, in two splits
            raise HgposeError(f"{spec}: the same folder as SOURCE {seen[path.resolve()]}; give each dataset once")
        seen[path.resolve()] = spec
        source_name = path.resolve().name or name
        base, k = source_name, 2
        while source_name in names:  # two folders of the same name: keep both apart
            source_name, k = f"{base}-{k}", k + 1
        names.add(source_name)
        sources.append(FORMATS[name].read(source_name, path))
    return sources

"""The docs cannot rot: every `hgpose ...` command shown in README.md and docs/*.md names a
real sub-command and only options that sub-command accepts (checked against the real
argparse parser), and every Make target the README names exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hgpose.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_lines(text: str) -> list[str]:
    """Lines of fenced code blocks without a language or in bash/sh/console, with backslash
    continuations joined. Fences are paired in order, so a ```python block's closing fence is
    never taken for an opening one."""
    lines, block, language = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                block, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh", "console"):
                    joined = "\n".join(block).replace("\\\n", " ")
                    lines += [part.split("  #")[0].strip() for part in joined.splitlines()]
                block = None
        elif block is not None:
            block.append(line)
    return lines


def _hgpose_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for line in _code_lines(doc.read_text()):
            m = re.search(r"(?:^|\s|/)hgpose (\w[\w-]*)(.*)", line)
            if m and not line.startswith(("python", "from", "import")):
                found.append((f"{doc.name}: {line}", [m.group(1), *shlex.split(m.group(2))]))
    return found


COMMANDS = _hgpose_commands()


def test_the_docs_show_the_main_commands():
    shown = {argv[0] for _, argv in COMMANDS}
    assert {"prepare", "train", "evaluate", "explain"} <= shown, shown


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where, argv):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices  # name -> sub-parser
    assert argv[0] in sub, f"{where}: no sub-command {argv[0]!r}"
    options = {s for action in sub[argv[0]]._actions for s in action.option_strings}
    for word in argv[1:]:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"{where}: {argv[0]} has no option {word}"


def test_make_targets_named_in_the_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"^make ([\w-]+)", "\n".join(_code_lines((ROOT / "README.md").read_text())), flags=re.M)):
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target


def test_a_command_line_builds_only_the_named_commands_flags():
    """`hgpose predict ...` does not wait for explain's parts to describe their flags; `hgpose
    --help` and a misspelt command still get the whole command line."""
    import subprocess
    import sys

    from hgpose.cli import COMMANDS, _command_of

    assert _command_of(["predict", "lspet-cpu", "photo.jpg"]) == "predict"
    assert _command_of(["--version"]) is None and _command_of(["bogus", "x"]) is None
    assert list(build_parser()._subparsers._group_actions[0].choices) == list(COMMANDS)
    assert list(build_parser("predict")._subparsers._group_actions[0].choices) == ["predict"]
    code = ("import sys; from hgpose.cli import build_parser; build_parser('predict'); "
            "print('hgpose.explain.parts' in sys.modules, 'hgpose.explain.pipeline' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]

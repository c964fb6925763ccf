"""The README's first steps run as written: the "try it in one minute" block (the shipped model on
the shipped example photos) and the "Use from Python" snippets, on a fresh folder."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hgpose import examples

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
QUICK_START = "<!-- quick-start: tests/test_readme.py runs this block as written -->"


def _block_after(marker: str, language: str) -> str:
    """The first fenced ```language block after `marker` in the README."""
    assert marker in README, f"README.md lost its marker {marker!r}"
    rest = README[README.index(marker):]
    opening = f"```{language}\n"
    start = rest.index(opening) + len(opening)
    return rest[start:rest.index("```", start)]


def _run_readme_line(line: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(line)
    assert argv[0] == ".venv/bin/hgpose", f"the quick start runs hgpose from the set-up's venv: {line}"
    return subprocess.run([sys.executable, "-m", "hgpose", *argv[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_the_quick_start_block_runs_as_written(tmp_path):
    lines = [line for line in _block_after(QUICK_START, "bash").splitlines() if line.strip()]
    assert len(lines) == 2
    for line in lines:
        done = _run_readme_line(line, tmp_path)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    boxes = examples.boxes()
    out, saliency = tmp_path / "out" / "try", tmp_path / "out" / "try-saliency"
    for image in examples.images():
        for suffix in (".skeleton.png", ".heatmaps.png", ".json"):
            assert (out / f"{image.stem}{suffix}").stat().st_size > 0
        assert (saliency / f"{image.stem}.saliency.png").stat().st_size > 0
        people = json.loads((out / f"{image.stem}.json").read_text())
        assert len(people) == len(boxes[image.name])
    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == sum(len(b) for b in boxes.values())


def test_the_python_snippets_run_as_written(tmp_path, monkeypatch):
    """Both "Use from Python" blocks, with photo.jpg one of the example photos."""
    section = README[README.index("## Use from Python"):README.index("## Explain your own model")]
    blocks = section.split("```python\n")[1:]
    assert len(blocks) == 2
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(examples.images()[0].read_bytes())
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        exec(compile(block[:block.index("```")], "README.md", "exec"), scope)
    assert scope["keypoints"].shape == (17, 3)
    assert [p.shape for p in scope["people"]] == [(17, 3), (17, 3)]
    assert scope["heatmaps"].shape[0] == 17
    assert scope["latent"].ndim == 4 and scope["latent"].shape[0] == 1

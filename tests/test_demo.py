"""`hgpose demo`: every stage runs for real, writes its output, and a rerun skips what is done."""

from __future__ import annotations

import json

from hgpose.cli import main


def test_demo_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--minutes", "0.2", "--train-images", "24", "--val-images", "6"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Open the report:" in printed and "chosen K =" in printed
    headline = json.loads((out / "demo.json").read_text())
    assert headline["train_epochs"] >= 1
    assert 0 <= headline["pck_thesis"] <= 1 and 0 < headline["pc1_explained_variance"] <= 1
    assert 2 <= headline["kmeans_chosen_k"] <= 10
    for path in ("coco/annotations/person_keypoints_train2017.json", "data/manifest.json",
                 "run/config.json", "run/checkpoints/best.safetensors", "evaluate/metrics.json",
                 "report/report.html", "report/explain.json"):
        assert (out / path).is_file(), path
    assert headline["predictions"] and all((out / "predict").joinpath(p.split("/")[-1]).is_file()
                                           for p in headline["predictions"])

    # A rerun skips synth, prepare and training: their files are left untouched.
    stamps = {p: (out / p).stat().st_mtime_ns for p in
              ("coco/annotations/person_keypoints_train2017.json", "data/manifest.json",
               "run/checkpoints/best.safetensors")}
    assert main(args) == 0
    assert {p: (out / p).stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "demo.json").read_text())["train_epochs"] == headline["train_epochs"]

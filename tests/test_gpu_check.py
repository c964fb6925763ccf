"""`benchmarks/gpu_check.py`: the GPU check's dry-run runs every part on the CPU at tiny sizes,
so that a lent GPU's minutes are not spent on a mistake a CPU would have shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from builders import import_benchmark

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SPEED_PARTS = {"train_eager": ["bf16+cl", "fp32"], "train_compiled": ["bf16+cl+compile"],
               "inference_eager": ["bf16+cl", "fp32"], "inference_compiled": ["bf16+cl+compile"]}
NETWORKS = ["thesis", "newell2", "newell8"]


def gpu_check(out: Path, *args: str, timeout: float = 550) -> subprocess.CompletedProcess:
    # About a minute on 2 idle cores; the timeout leaves room for a CPU shared with other jobs.
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def prepare_reads_lsp() -> bool:
    result = subprocess.run([sys.executable, "-m", "hgpose", "prepare", "--help"],
                            capture_output=True, text=True, timeout=60)
    return "lsp:" in result.stdout


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    result = gpu_check(out)
    report_file = out / "gpu_check.json"
    assert report_file.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    return out, json.loads(report_file.read_text()), result


def test_every_part_runs_and_is_reported(dry_run):
    out, report, result = dry_run
    parts = report["parts"]
    assert list(parts) == ["device", "real_prepare", "train_eager", "train_compiled", "inference_eager",
                           "inference_compiled", "ddp", "real_train", "real_evaluate", "real_explain"]
    assert report["dry_run"] and report["settings"]["device"] == "cpu"
    assert parts["device"]["status"] == "ok" and parts["device"]["result"]["torch"]
    assert all(p["seconds"] <= p["budget_s"] + 5 for p in parts.values())
    table = (out / "gpu_check.md").read_text()
    assert "| part | status | seconds / budget | error |" in table
    assert all(p["title"] in table for p in parts.values())
    # The dry-run is part of the suite: it must stay small, about a minute on 2 idle cores.
    # Its CPU time, unlike its wall time, does not depend on what else the machine runs.
    assert report["cpu_seconds"] < 120, result.stdout


def test_every_network_and_mode_has_a_speed(dry_run):
    _, report, _ = dry_run
    for part, modes in SPEED_PARTS.items():
        record = report["parts"][part]
        assert record["status"] == "ok", record
        rows = {(r["model"], r["mode"]): r for r in record["rows"]}
        assert set(rows) == {(n, m) for n in NETWORKS for m in modes}
        for (network, mode), row in rows.items():
            if "compile" in mode and network != "thesis":  # the dry-run compiles the thesis network only
                assert "dry-run" in row["skipped"]
                continue
            assert row["img_s"] > 0 and row["batch"] >= 1 and row["first_pass_s"] > 0, row
            assert row["tried"][0]["batch"] == (1 if mode == "bf16+cl" else row["batch"])
    # the compiled parts run at the batch the eager search found
    eager = {r["model"]: r["batch"] for r in report["parts"]["train_eager"]["rows"] if r["mode"] == "bf16+cl"}
    assert report["parts"]["train_compiled"]["rows"][0]["batch"] == eager["thesis"]


def test_torchrun_trains_and_all_reduces(dry_run):
    _, report, _ = dry_run
    ddp = report["parts"]["ddp"]
    if ddp["status"] == "skipped" and not prepare_reads_lsp():
        pytest.skip("`hgpose prepare` does not read lsp: sources yet (the DDP part trains on that store)")
    assert ddp["status"] == "ok", ddp
    (row,) = ddp["rows"]
    assert row["processes"] == row["world_size"] == 1 and row["backend"] == "gloo"
    assert row["sum"] == row["expected"] and row["img_s"] > 0


def test_real_people_are_trained_evaluated_and_explained(dry_run):
    out, report, result = dry_run
    parts = report["parts"]
    if not prepare_reads_lsp():
        pytest.skip("`hgpose prepare` does not read lsp: sources yet")
    for name in ("real_prepare", "real_train", "real_evaluate", "real_explain"):
        assert parts[name]["status"] == "ok", parts[name]
    splits = parts["real_prepare"]["result"]["splits"]
    assert splits["val"] == splits["test"] == 5 and splits["train"] > 20
    train = parts["real_train"]["result"]
    assert train["epochs"] >= 1 and train["img_s"] > 0 and 0 <= train["best_val_pck"] <= 1
    evaluated = parts["real_evaluate"]["result"]
    for value in [*evaluated["pck@0.2"].values(), *evaluated["pck_thesis"].values()]:
        assert value is None or 0 <= value <= 1
    assert evaluated["pck@0.2"]["bbox"] is not None and evaluated["pck_thesis"]["all"] is not None
    explained = parts["real_explain"]["result"]
    assert 0 < explained["pc1"] <= 1 and 2 <= explained["kmeans_k"] <= 10
    assert 0 <= explained["pck_with_skips"] <= 1 and 0 <= explained["pck_without_skips"] <= 1
    assert Path(explained["report"]).is_file()
    assert result.returncode == 0, result.stdout


def test_a_failing_and_a_hanging_part_are_recorded_and_the_rest_still_runs(tmp_path):
    result = gpu_check(tmp_path, "--only", "device,real_prepare,train_eager", "--inject", "device=fail",
                       "--inject", "real_prepare=hang", "--budget", "real_prepare=3")
    assert result.returncode == 1, result.stdout + result.stderr
    parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert list(parts) == ["device", "real_prepare", "train_eager"]
    assert parts["device"]["status"] == "failed"
    assert parts["device"]["error"] == "RuntimeError: injected failure (--inject)"
    assert parts["real_prepare"]["status"] == "timeout" and parts["real_prepare"]["seconds"] < 6
    assert "budget of 3 s" in parts["real_prepare"]["error"]
    assert parts["train_eager"]["status"] == "ok"
    assert all(row["img_s"] > 0 for row in parts["train_eager"]["rows"])
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| 1 device and versions | failed |" in table and "| 5 prepare LSPET | timeout |" in table


def test_an_unknown_part_is_a_one_line_error(tmp_path):
    result = gpu_check(tmp_path, "--only", "device,warp_drive", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "unknown part(s) warp_drive; choose from device, real_prepare, train_eager, train_compiled, "
        "inference_eager, inference_compiled, ddp, real_train, real_evaluate, real_explain")


def test_the_batch_search_stops_at_memory_and_halves_what_does_not_fit(monkeypatch):
    torch = pytest.importorskip("torch")
    gpu_check = import_benchmark("gpu_check")
    monkeypatch.setattr(gpu_check, "release_memory", lambda: None)  # nothing was allocated

    def speed(fits_up_to: int, rates: dict):
        def measure(batch: int) -> dict:
            if batch > fits_up_to:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return {"img_s": rates[batch]}
        return measure

    rates = {16: 100.0, 32: 180.0, 64: 300.0, 128: 310.0, 256: 320.0}
    best = gpu_check.search_batch(speed(512, rates), [32, 64, 128, 256])
    assert best["batch"] == 128 and [t["batch"] for t in best["tried"]] == [32, 64, 128]  # 128 gained < 5 %
    best = gpu_check.search_batch(speed(64, rates), [32, 64, 128, 256])
    assert best["batch"] == 64 and "out of memory" in best["tried"][-1]["error"]
    best = gpu_check.search_batch(speed(16, rates), [64])  # a given batch that does not fit is halved
    assert best["batch"] == 16 and [t["batch"] for t in best["tried"]] == [64, 32, 16]
    failed = gpu_check.search_batch(speed(0, rates), [1])
    assert failed["error"].startswith("OutOfMemoryError: CUDA out of memory")

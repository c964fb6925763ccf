"""DDP on the CPU: `torchrun --nproc_per_node=2` with the gloo backend, stop, resume."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from builders import make_store
from test_train import TINY

# Each rank: train, optionally stop after a global step, then record what it saw.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from hgpose.train import TrainingInterrupted, train

    store, run, stop_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    overrides = json.loads(sys.argv[5])
    rank = int(os.environ["RANK"])
    seen = []

    def on_step(info):
        seen.append(info["global_step"])
        return info["global_step"] == stop_at

    try:
        summary = train(store, run, epochs=2, batch_size=2, overrides=overrides,
                        resume=resume, on_step=on_step)
        status = "done"
    except TrainingInterrupted:
        status = "stopped"
    with open(os.path.join(run, f"rank{rank}.{status}.json"), "w") as f:
        json.dump({"steps": seen, "dist_initialised_after": torch.distributed.is_initialized()}, f)
""")


def torchrun(tmp_path: Path, store: Path, run: Path, stop_at: int, resume: bool, overrides) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(store), str(run), str(stop_at), "1" if resume else "0", json.dumps(overrides)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo not available")
def test_two_cpu_processes_shard_log_once_stop_and_resume(tmp_path):
    store = make_store(tmp_path / "store", n_train=8, n_val=3)
    run = tmp_path / "run"
    # 8 crops over 2 ranks, batch 2 per rank -> 2 steps per epoch; 3 val crops split 2 + 1.
    overrides = TINY + ["data.train_limit=8", "data.val_limit=3", "tensorboard=true"]
    torchrun(tmp_path, store, run, stop_at=3, resume=False, overrides=overrides)
    for rank in (0, 1):  # both ranks stopped at the same step
        assert json.loads((run / f"rank{rank}.stopped.json").read_text())["steps"] == [1, 2, 3]
    assert json.loads((run / "run.json").read_text())["world_size"] == 2

    torchrun(tmp_path, store, run, stop_at=-1, resume=True, overrides=[])
    done = [json.loads((run / f"rank{rank}.done.json").read_text()) for rank in (0, 1)]
    assert done[0]["steps"] == done[1]["steps"] == [4]   # resumed mid-epoch 2 at its last step
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]      # one writer, no duplicated rows
    assert all(0 <= float(r["val_pck"]) <= 1 for r in rows)
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 2  # rank 0 only, per session
    assert not done[0]["dist_initialised_after"]         # train() tore its process group down

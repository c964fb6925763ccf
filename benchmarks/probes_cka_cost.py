"""What do the probes and the CKA map cost on the `cpu` preset's network? The issue's target:
on 2 cores, probes over ~10 layers and the default targets on 1,000 crops, and a CKA map,
each within 5 minutes.

    python benchmarks/probes_cka_cost.py DATA_DIR                  # lspet-cpu on DATA_DIR's test split
    python benchmarks/probes_cka_cost.py DATA_DIR --run runs/lspet --crops 1000 --threads 2

DATA_DIR: a store of LSPET (`hgpose prepare lsp:LSPET DATA_DIR --val-size 500 --test-size 1000`).
Each step is one `hgpose explain` call into a fresh report folder and cache, so every time
includes its own network pass over the crops' layers (the latents pass explain always makes
comes first and is timed apart):

    latents   the pass every explain call makes (the chosen --limit crops, one layer)
    probes    --only probes: the layers' pass over --crops crops (11 layers pooled to 4x4),
              then ~30 targets x 11 layers x (probe + control) fits and the bootstrap, the
              fits one a core (--jobs, default every core)
    cka       --only cka on the same crops, in a fresh cache: the layers' pass again, then the
              minibatch CKA of every pair of layers

Prints one JSON line per step and a summary (wall and CPU seconds of each call, the load
average at the start: on a shared machine the wall time is not the cost); the numbers go in
the note of the change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a prepared LSPET store (DATA_DIR)")
    parser.add_argument("--run", default="lspet-cpu", help="RUN_DIR or shipped model name (default lspet-cpu)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--crops", type=int, default=1000, help="crops analysed (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--jobs", type=int, default=0, help="probes fitted at a time (default 0: one a core)")
    return parser.parse_args()


def cpu_seconds() -> float:
    """This process's CPU time (user + system, all threads): on a machine shared with other
    work the wall time stretches, the CPU time much less. The probe fits run in worker
    processes (`--probe-jobs`), whose CPU time is not in it: time the probes on a quiet machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run: str, data: str, out: Path, **options) -> dict:
    from hgpose.explain import explain

    started, cpu = time.perf_counter(), cpu_seconds()
    result = explain(run, data, out, progress=False, **options)
    return {"wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(cpu_seconds() - cpu, 1),
            "timings": result["timings"], "result": result}


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    common = dict(split=args.split, limit=args.crops)
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
                         f"torch {torch.__version__}, {args.threads} threads", "run": args.run, "crops": args.crops,
              "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        probes = timed(args.run, args.data, Path(tmp) / "probes", only=("probes",), probe_crops=args.crops,
                       probe_jobs=args.jobs, **common)
        section = probes["result"]["probes"]
        report["latents_s"] = probes["timings"]["latents"]
        report["probes_s"] = probes["timings"]["probes"]
        report["probes"] = {"layers": len(section["layers"]), "targets": len(section["targets"]),
                            "fits": 2 * len(section["layers"]) * len(section["targets"])}
        report["probes_call"] = {"wall_s": probes["wall_s"], "cpu_s": probes["cpu_s"]}
        print(json.dumps({"step": "probes", "cpu_s": probes["cpu_s"], **probes["timings"]}), flush=True)
        cka = timed(args.run, args.data, Path(tmp) / "cka", only=("cka",), cka_crops=args.crops, **common)
        report["cka_s"] = cka["timings"]["cka"]
        report["cka"] = {"layers": len(cka["result"]["cka"]["layers"]), "minibatches": cka["result"]["cka"]["minibatches"]}
        report["cka_call"] = {"wall_s": cka["wall_s"], "cpu_s": cka["cpu_s"]}
        print(json.dumps({"step": "cka", "cpu_s": cka["cpu_s"], **cka["timings"]}), flush=True)
    report["within_5_minutes"] = {"probes": report["probes_s"] <= 300, "cka": report["cka_s"] <= 300}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

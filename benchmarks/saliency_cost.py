"""What does the whole saliency part of `hgpose explain` cost on the `cpu` preset's network
(the shipped `lspet-cpu`), at the default sample and number of integrated-gradients steps, and
how complete are the integrated gradients at that number of steps?

    hgpose prepare lsp:LSPET data/lspet              # once: the store (test split: 900 crops)
    python benchmarks/saliency_cost.py --data data/lspet [--threads 2] [--split test]

Runs `hgpose explain lspet-cpu --only saliency` (the latents pass first, untimed here) and
prints the saliency part's wall time from explain.json's timings and the CPU seconds of the
call (the wall time on idle cores is about CPU seconds / threads), what it did (drawn crops,
scored crops, randomisation steps, network passes), integrated gradients' completeness error
(|sum of attributions - change of the peak along the path| / |change|) and each method's
sanity verdict. The issue's budget: the whole part within 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="an LSPET store written by `hgpose prepare`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2, the budget's cores)")
    parser.add_argument("--out", default=None, help="report folder (default: a temporary one)")
    args = parser.parse_args()

    import torch

    from hgpose.explain import explain

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "report")
        started, cpu = time.perf_counter(), cpu_seconds()
        result = explain("lspet-cpu", args.data, out, split=args.split, only=("saliency",), progress=False)
        total, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    report(result, total, cpu, args)


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, all threads): unlike the wall time,
    nearly the same whether other processes share the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(result: dict, total: float, cpu: float, args) -> None:
    s = result["saliency"]
    indices, checked = s["indices"], s["sanity"]
    c = indices["completeness"]
    print(f"{platform.processor() or platform.machine()}, torch threads {args.threads}; lspet-cpu on "
          f"{args.split} ({result['data']['crops']:,} crops), {len(s['joints'])} joints")
    print(f"saliency part: {result['timings']['saliency']:.0f} s wall  (explain in all: {total:.0f} s wall, "
          f"{cpu:.0f} CPU seconds; latents {result['timings'].get('latents', 0):.0f} s, reused when cached)")
    print(f"  drawn crops {len(s['samples'])}, scored crops {len(indices['rows'])}, randomisation "
          f"{len(checked['rows']) if checked else 0} crop(s) x {len(checked['steps']) if checked else 0} steps; "
          f"{s['cost']['passes_per_crop']:,} network passes per crop")
    print(f"integrated gradients, {c['steps']} steps, blur sigma {c['blur_sigma']:g}: completeness error "
          f"median {c['median']:.3f}, mean {c['mean']:.3f}, 90th percentile {c['p90']:.3f} ({c['n']} maps)")
    for method, v in indices["methods"].items():
        li, inv = v["localisation"]["all"], v["inversion"]["all"]
        verdict = "no randomisation check"
        if checked:
            m = checked["methods"][method]
            verdict = f"randomisation check {'passes' if m['passes'] else 'FAILS'} (rho {m['rho'][-1]:.2f})"
        print(f"  {method:22s} localisation {li['mean']:.2f} ± {li['se']:.2f}, inversion {inv['mean']:.2f} "
              f"± {inv['se']:.2f}; {verdict}")

if __name__ == "__main__":
    main()

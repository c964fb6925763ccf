"""The GPU check (issue 15): what ten minutes of a lent GPU can tell about hgpose.

    python benchmarks/gpu_check.py --out DIR [--lspet PATH] [--minutes-real N]
    python benchmarks/gpu_check.py --out DIR --dry-run     # every part on the CPU, tiny, < 1 min

Parts, in the order they run, each with its own time budget (seconds on a GPU):
    device              1  device, driver, torch / CUDA / cuDNN / NCCL versions            25
    real_prepare        5  `hgpose prepare lsp:LSPET` (val 500, test 500 crops)           35
    train_eager         2  training img/s + peak memory of the thesis network and Newell  85
                           2- and 8-stack at 256 features: bf16 + channels-last (batch
                           searched: the one with the most img/s) and fp32 at that batch
    train_compiled      2  the same with torch.compile (bf16 + channels-last)             100
    inference_eager     3  inference img/s, the exported graph (mean subtraction + net)    30
    inference_compiled  3  the same, compiled                                              55
    ddp                 4  torchrun: real `hgpose train` (1 process; 2 with 2 GPUs) and    40
                           an all-reduce on the process group (NCCL; gloo on the CPU)
    real_train          5  the thesis network (256 features) on LSPET for --minutes-real   2 min + 25
                           in the mode that gets through the most crops in that time
    real_evaluate       5  the held-out test crops: PCK@0.2 (box, torso), thesis PCK       30
    real_explain        5  PCA + K-means + skip ablation on the training crops; report    45

Risky work runs in child processes (this script with --worker, or the hgpose CLI) in their own
process group: a part that overruns its budget is killed and recorded as "timeout", one that
fails as "failed" with its error in one line, and the next part starts either way. Results go
to DIR/gpu_check.json (every number) and DIR/gpu_check.md (tables), rewritten after every
part, so even a check cut short leaves what it measured; each child's output is in DIR/logs/.
Re-running a few parts: --only real_train,real_evaluate (the store and run stay in DIR/work).

--dry-run runs the same code on the CPU at tiny sizes (8 features, batches 1-2, one timed
step) on the first 40 LSPET images (or drawn stick people where LSPET is absent), so that
the GPU minutes are not spent on a mistake a CPU would have shown. On the CPU only the thesis
network is compiled, training with the aot_eager backend (TorchDynamo + AOTAutograd) and
inference with eager (TorchDynamo alone): inductor's C++ build takes ~80 s for one tiny
network there, and tracing Newell 9-30 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from train_step import MODELS  # label -> (preset, overrides): the three networks, measured alike

REPO = Path(__file__).resolve().parents[1]
MODEL_KEYS = dict(zip(("thesis", "newell2", "newell8"), MODELS))  # short name -> MODELS label
MIN_GAIN = 0.05          # the batch search stops when doubling the batch gains less than this
MAX_EPOCHS = 1000
TEN_MINUTES = 600.0


# --- sizes and budgets ---------------------------------------------------------------------

def sizes(dry_run: bool, minutes_real: float) -> dict:
    """Everything that differs between the GPU check and its CPU dry-run."""
    cores = os.cpu_count() or 1
    if dry_run:
        return dict(device="cpu", features=8, train_batches=[1, 2], inference_batches=[1, 2],
                    train_steps=1, inference_iters=1, warmup=1,
                    compile_backend={"train": "aot_eager", "inference": "eager"},
                    compile_models=["thesis"], ddp_batch=2, ddp_steps=2, lsp_images=40,
                    val_size=5, test_size=5, workers=0, prepare_workers=1, real_batch_cap=2,
                    explain_batch=8, train_seconds=4.0)
    return dict(device="cuda", features=256, train_batches=[32, 64, 128, 256],
                inference_batches=[64, 128, 256, 512], train_steps=5, inference_iters=8,
                warmup=3, compile_backend={"train": "inductor", "inference": "inductor"},
                compile_models=list(MODEL_KEYS),
                ddp_batch=32, ddp_steps=10, lsp_images=None, val_size=500, test_size=500,
                workers=min(8, cores), prepare_workers=cores, real_batch_cap=64,
                explain_batch=128, train_seconds=minutes_real * 60)


def budgets(dry_run: bool, train_seconds: float) -> dict:
    """Seconds each part may take at most (GPU, or the CPU dry-run's looser ceilings)."""
    # A cold machine's first CUDA context and torch import take seconds: the device part has
    # room for them. The sum is 9.8 minutes with the default 2 minutes of real training.
    gpu = dict(device=25, real_prepare=35, train_eager=85, train_compiled=100,
               inference_eager=30, inference_compiled=55, ddp=40,
               real_train=train_seconds + 25, real_evaluate=30, real_explain=45)
    if dry_run:  # only a guard against a hang: a CPU shared with other jobs can be very slow
        return {name: 150.0 + (train_seconds if name == "real_train" else 0) for name in gpu}
    return gpu


# --- worker side: runs in a child process ---------------------------------------------------

def one_line(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}"[:300]


def is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def release_memory() -> None:
    import gc

    import torch

    # Compiled graphs keep their models alive and count against dynamo's recompile limit
    # (dynamo is only loaded once something was compiled).
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def time_and_memory(run, batch: int, iters: int, warmup: int, device) -> dict:
    """img/s (benchmarks/inference.timed: median of `iters` passes) and peak memory. The first
    pass is timed alone: it holds cuDNN's algorithm search and, compiled, the compilation."""
    import torch

    from inference import timed

    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    run()
    sync()
    first = time.perf_counter() - start
    img_s = timed(run, batch, iters, max(warmup - 1, 0), sync)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return {"img_s": img_s, "first_pass_s": first, "peak_gib": peak}


def model_config(key: str, mode: str, batch: int, s: dict):
    from hgpose.config import resolve

    preset, overrides = MODELS[MODEL_KEYS[key]]
    bf16 = mode != "fp32"  # every other mode is bf16 + channels-last, the presets' CUDA setting
    return resolve(preset, overrides + [
        f"device={s['device']}", f"model.features={s['features']}",
        f"precision={'auto' if bf16 else 'fp32'}", f"channels_last={str(bf16).lower()}"],
        batch_size=batch)


def maybe_compile(model, mode: str, task: str, s: dict):
    import torch

    return torch.compile(model, backend=s["compile_backend"][task]) if "compile" in mode else model


def measure_training(key: str, mode: str, batch: int, s: dict) -> dict:
    """One training step as `hgpose train` takes it (`Trainer.step`: loss, backward, update)."""
    import torch

    from hgpose import thesis
    from hgpose.inference.device import autocast_dtype, precision_name
    from hgpose.models import build_model
    from hgpose.train.recipes import PosePhase
    from hgpose.train.step import Trainer
    from train_step import random_batch

    config = model_config(key, mode, batch, s)
    device = torch.device(s["device"])
    torch.manual_seed(0)
    phase = PosePhase(config, device, torch.tensor(thesis.TRAIN_MEAN_RGB))
    trainer = Trainer.build(phase, build_model(config.model).train(), config.optim, config, device)
    network = maybe_compile(trainer.model, mode, "train", s)
    host_batch = random_batch(batch)
    if device.type == "cuda":
        host_batch = tuple(t.pin_memory() for t in host_batch)

    def step() -> None:
        trainer.step(host_batch, torch.Generator().manual_seed(0), network=network)

    result = time_and_memory(step, batch, s["train_steps"], s["warmup"], device)
    return {**result, "amp": precision_name(autocast_dtype(config.precision, device)),
            "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6}


def measure_inference(key: str, mode: str, batch: int, s: dict) -> dict:
    """Forward passes of the graph `hgpose export` writes, as benchmarks/inference.py runs it."""
    import torch

    from hgpose import thesis
    from hgpose.export import ExportedNetwork
    from hgpose.models import build_model
    from inference import torch_mode

    config = model_config(key, mode, batch, s)
    torch.manual_seed(0)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    network = ExportedNetwork(build_model(config.model), thesis.TRAIN_MEAN_RGB)
    model = network.eval().to(s["device"], memory_format=fmt)
    run = torch_mode(maybe_compile(model, mode, "inference", s), batch, s["device"],
                     channels_last=config.channels_last, bf16=config.channels_last)
    result = time_and_memory(run, batch, s["inference_iters"], s["warmup"], torch.device(s["device"]))
    return {**result, "amp": "bf16" if config.channels_last else "fp32"}


def attempt(measure: Callable[[int], dict], batch: int) -> dict:
    try:
        result = {"batch": batch, **measure(batch)}
    except Exception as e:  # recorded per batch: out of memory, a compiler error, ...
        result = {"batch": batch, "error": one_line(e), "oom": is_oom(e)}
    release_memory()  # after the except block: its traceback no longer pins the tensors
    return result


def search_batch(measure: Callable[[int], dict], candidates: list[int]) -> dict:
    """The candidate batch (ascending) with the most img/s. Stops at an error, or once a larger
    batch gains less than MIN_GAIN; when nothing has fitted yet, an out-of-memory batch is
    halved until one fits."""
    tried, best, queue = [], None, list(candidates)
    while queue:
        result = attempt(measure, queue.pop(0))
        tried.append({k: result[k] for k in ("batch", "img_s", "error") if k in result})
        if "error" in result:
            if result["oom"] and best is None and result["batch"] > 1:
                queue = [result["batch"] // 2]
                continue
            break
        gained = best is None or result["img_s"] > best["img_s"] * (1 + MIN_GAIN)
        if best is None or result["img_s"] > best["img_s"]:
            best = result
        if not gained:
            break
    summary = dict(best) if best is not None else {"error": tried[-1]["error"]}
    return {**summary, "tried": tried}


def worker_speed(job: dict, emit) -> None:
    """Training or inference speed of every network in `job["modes"]`. The first mode searches
    the batch unless `job["batches"]` gives it; the next modes run at the batch found. A
    compiled mode never searches (each batch would be a compilation)."""
    import torch

    torch.backends.cudnn.benchmark = True  # as `hgpose train` (unless deterministic)
    s = job["settings"]
    measure = measure_training if job["task"] == "train" else measure_inference
    for key in MODEL_KEYS:
        batch = job["batches"].get(key)
        for mode in job["modes"]:
            row = {"task": job["task"], "model": key, "mode": mode}
            if "compile" in mode and key not in s["compile_models"]:
                emit({**row, "skipped": "dry-run: on a CPU only the thesis network is compiled "
                                        "(tracing Newell takes 9-30 s there)"})
                continue
            candidates = s[f"{job['task']}_batches"]
            if batch is not None or "compile" in mode:  # a compiled search would compile per batch
                candidates = [batch or candidates[0]]
            result = search_batch(lambda b: measure(key, mode, b, s), candidates)
            if "compile" in mode:
                result["backend"] = s["compile_backend"][job["task"]]
            emit({**row, **result})
            batch = batch or result.get("batch")


def nvidia_smi() -> dict:
    query = "--query-gpu=name,driver_version,memory.total"
    try:
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"nvidia_smi": f"unavailable ({type(e).__name__})"}
    return {"nvidia_smi": out}


def worker_device(job: dict, emit) -> None:
    import torch

    import hgpose

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "hgpose": hgpose.__version__, "cpu": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(), "gpu_count": torch.cuda.device_count(), "gpus": [],
            "cudnn_tf32": torch.backends.cudnn.allow_tf32, **nvidia_smi()}
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        info["gpus"].append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                             "capability": f"{p.major}.{p.minor}"})
    if torch.cuda.is_available():
        info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        info["bf16"] = torch.cuda.is_bf16_supported()
        (torch.ones(1, device="cuda") + 1).item()  # the device really computes
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    emit(info)


def worker_collective(job: dict, emit) -> None:
    """One all-reduce on the process group `hgpose train` would use (under torchrun)."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = "nccl" if job["settings"]["device"] == "cuda" else "gloo"
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        value = torch.full((1,), float(rank + 1), device=device)
        dist.all_reduce(value)
        dist.barrier()
        if rank == 0:
            emit({"backend": backend, "world": world, "sum": value.item(),
                  "expected": world * (world + 1) / 2})
    finally:
        dist.destroy_process_group()


def worker_inject(job: dict, emit) -> None:
    """--inject PART=fail|hang: a part that fails or never ends, to test the check itself."""
    if job["inject"] == "hang":
        time.sleep(10**6)
    raise RuntimeError("injected failure (--inject)")


WORKERS = {"speed": worker_speed, "device": worker_device, "collective": worker_collective,
           "inject": worker_inject}


def worker_main(name: str, job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())

    def emit(row: dict) -> None:
        with open(job["rows"], "a") as f:  # one line per result, so a killed worker keeps them
            f.write(json.dumps(row) + "\n")

    WORKERS[name](job, emit)
    return 0


# --- parent side: runs the parts --------------------------------------------------------------

class PartTimeout(Exception):
    pass


class StepFailed(Exception):
    pass


def error_line(log: Path) -> str:
    """The line of a child's output that says what went wrong: an hgpose error, the last
    exception of a traceback, else the last line."""
    lines = [l.strip() for l in log.read_text(errors="replace").splitlines() if l.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if line.startswith("hgpose ") and ": error: " in line:
            return line[:300]
        if head.endswith(("Error", "Exception", "Interrupt", "Exit")) and " " not in head:
            return line[:300]
    return (lines[-1] if lines else f"no output (see {log})")[:300]


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_command(cmd: list[str], log: Path, timeout: float, env: dict,
                stop_after: float | None = None, may_stop: Callable[[], bool] = lambda: True) -> bool:
    """Run `cmd` in its own process group with its output in `log`. After `stop_after` s,
    once `may_stop()`, it gets SIGTERM (hgpose train saves its state and exits 130); at
    `timeout` s its whole group is killed (PartTimeout). Returns True if it was stopped."""
    start, stopped = time.perf_counter(), False
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)
        try:
            while proc.poll() is None:
                elapsed = time.perf_counter() - start
                if elapsed > timeout:
                    raise PartTimeout(f"stopped after its budget of {timeout:.0f} s")
                if stop_after is not None and not stopped and elapsed > stop_after and may_stop():
                    proc.send_signal(signal.SIGTERM)  # the main process only: it stops its workers
                    stopped = True
                time.sleep(0.1)
        finally:
            kill_group(proc)  # nothing of it outlives the step: loader workers, torchrun ranks
    # Stopped: 130 is hgpose train's own exit after saving. A SIGTERM death (-15) means the
    # signal came after its handler was gone, i.e. once the run had finished (may_stop only
    # lets it through after the first epoch): seen on a loaded machine, not a failure.
    if proc.returncode != 0 and not (stopped and proc.returncode in (130, -signal.SIGTERM)):
        raise StepFailed(error_line(log))
    return stopped


@dataclass
class Part:
    name: str
    title: str
    run: Callable          # (check, record) -> None; fills the record
    needs: Callable | None = None  # (check) -> a reason to skip, or None


class Check:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.dry = args.dry_run
        self.s = sizes(self.dry, args.minutes_real)
        self.budgets = budgets(self.dry, self.s["train_seconds"])
        for item in args.budget:
            name, _, value = item.partition("=")
            self.budgets[name] = float(value)
        self.work = self.out / "work"
        self.logs = self.out / "logs"
        self.store = self.work / "lspet-store"
        self.run_dir = self.work / "real-run"
        self.report = {"format_version": 1, "dry_run": self.dry,
                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "settings": self.s, "parts": {}}
        self.deadline = 0.0
        self.partial_rows: list[dict] = []  # the rows of the last worker, even if it was killed
        self.temp = tempfile.TemporaryDirectory(prefix="gpu-check-")

    def env(self) -> dict:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.dry:  # tiny networks on 2 shared cores: one thread each is the fastest
            env.setdefault("OMP_NUM_THREADS", "1")
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        return env

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def call(self, cmd: list[str], step: str, **kw) -> bool:
        return run_command(cmd, self.logs / f"{step}.log", self.remaining(), self.env(), **kw)

    def hgpose(self, *args: str, step: str, **kw) -> bool:
        return self.call([sys.executable, "-m", "hgpose", *args], step, **kw)

    def worker(self, name: str, job: dict, step: str, torchrun: int = 0) -> list[dict]:
        """Run a worker of this script (under torchrun with that many processes); its rows."""
        rows = self.logs / f"{step}.rows.jsonl"
        rows.unlink(missing_ok=True)
        job_path = self.logs / f"{step}.job.json"
        job_path.write_text(json.dumps({**job, "settings": self.s, "rows": str(rows)}))
        launcher = [sys.executable]
        if torchrun:
            launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
        try:
            self.call(launcher + [__file__, "--worker", name, "--job", str(job_path)], step)
        finally:
            self.partial_rows = read_rows(rows)
        return self.partial_rows

    def result_of(self, part: str) -> dict:
        return self.report["parts"].get(part, {})


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- the parts ---------------------------------------------------------------------------------

def part_device(check: Check, record: dict) -> None:
    record["result"] = check.worker("device", {}, "device")[0]


def speed_part(task: str, modes: list[str], searched_by: str | None = None):
    """A speed part: `task` (train | inference) in `modes`; compiled parts take each network's
    batch from the eager part's search (`searched_by`)."""
    def run(check: Check, record: dict) -> None:
        batches = {}
        for row in check.result_of(searched_by).get("rows", []) if searched_by else []:
            if row.get("mode") == "bf16+cl" and row.get("batch"):
                batches[row["model"]] = row["batch"]
        try:
            check.worker("speed", {"task": task, "modes": modes, "batches": batches}, record["name"])
        finally:  # what was measured before a timeout or a crash is kept
            record["rows"] = check.partial_rows
        if any("error" in row for row in record["rows"]):
            record["status"] = "partial"
    return run


def lsp_source(check: Check) -> Path:
    """The LSP-format folder part 5 prepares: LSPET itself, or for the dry-run its first
    images (drawn stick people where LSPET is absent), made in a temporary folder."""
    lspet = Path(check.args.lspet) if check.args.lspet else default_lspet()
    if not check.dry:
        if lspet is None or not (lspet / "joints.mat").is_file():
            raise StepFailed(f"LSPET not found at {lspet}; pass --lspet PATH (joints.mat + images/)")
        return lspet
    tiny = Path(check.temp.name) / "lsp"
    if not tiny.is_dir():
        if lspet is not None and (lspet / "joints.mat").is_file():
            lsp_subset(lspet, tiny, check.s["lsp_images"])
        else:
            stick_people(tiny, check.s["lsp_images"])
    return tiny


def default_lspet() -> Path | None:
    for root in (REPO.parent / "shared", REPO / "shared"):
        if (root / "data" / "lspet" / "joints.mat").is_file():
            return root / "data" / "lspet"
    return None


def lsp_image(root: Path, n: int) -> Path:
    for digits in (5, 4):  # LSPET names its images imNNNNN.jpg, LSP imNNNN.jpg
        path = root / "images" / f"im{n:0{digits}d}.jpg"
        if path.is_file():
            return path
    raise StepFailed(f"{root / 'images'}: no image for joints.mat column {n}")


def lsp_subset(source: Path, dest: Path, count: int) -> None:
    """The first `count` images of an LSP-format folder with their columns of joints.mat."""
    from scipy.io import loadmat, savemat

    joints = loadmat(source / "joints.mat")["joints"]  # 14 x 3 x N (LSPET) or 3 x 14 x N (LSP)
    (dest / "images").mkdir(parents=True)
    for n in range(1, count + 1):
        image = lsp_image(source, n)
        shutil.copy2(image, dest / "images" / image.name)
    savemat(dest / "joints.mat", {"joints": joints[:, :, :count]})


# A standing person in LSP's joint order, in units of its height, origin between the hips.
STICK = np.array([(-.10, .50), (-.10, .25), (-.08, 0), (.08, 0), (.10, .25), (.10, .50),
                  (-.25, 0), (-.20, -.20), (-.13, -.35), (.13, -.35), (.20, -.20), (.25, 0),
                  (0, -.38), (0, -.55)])
LIMBS = [(0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (2, 3), (8, 9),
         (12, 13), (2, 8), (3, 9)]


def stick_people(dest: Path, count: int, seed: int = 0) -> None:
    """An LSP-format folder of drawn stick people, for a dry-run where LSPET is absent."""
    import cv2
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    (dest / "images").mkdir(parents=True)
    joints = np.zeros((14, 3, count))
    for n in range(count):
        image = rng.integers(0, 256, (240, 180, 3), dtype=np.uint8)
        points = STICK * rng.uniform(120, 170) + rng.uniform((70, 100), (110, 140))
        points += rng.normal(0, 4, points.shape)
        for a, b in LIMBS:
            cv2.line(image, tuple(map(int, points[a])), tuple(map(int, points[b])), (255, 255, 255), 5)
        cv2.imwrite(str(dest / "images" / f"im{n + 1:05d}.jpg"), image)
        joints[:, :2, n] = points
        joints[:, 2, n] = 1
    savemat(dest / "joints.mat", {"joints": joints})


def part_real_prepare(check: Check, record: dict) -> None:
    """LSPET -> the store. A finished store of the same source is reused (a rerun of later
    parts costs no second prepare); the dry-run's source is a new temporary folder each time."""
    source = lsp_source(check)
    s = check.s
    if check.dry:
        shutil.rmtree(check.store, ignore_errors=True)
    check.hgpose("prepare", f"lsp:{source}", str(check.store), "--val-size", str(s["val_size"]),
                 "--test-size", str(s["test_size"]), "--seed", "0",
                 "--workers", str(s["prepare_workers"]), step="real_prepare")
    manifest = json.loads((check.store / "manifest.json").read_text())
    record["result"] = {"source": str(source), "store": str(check.store),
                        "splits": manifest["splits"], "mean_rgb": manifest["mean_rgb"]}


def needs_store(check: Check) -> str | None:
    if not (check.store / "manifest.json").is_file():
        return f"needs the LSPET store of real_prepare ({check.store})"
    return None


def train_overrides(check: Check, batch: int) -> list[str]:
    s = check.s
    return [f"model.features={s['features']}", f"device={s['device']}", f"data.workers={s['workers']}",
            f"data.val_batch_size={max(batch, 32)}", "progress=false", "tensorboard=false",
            "keep_epoch_checkpoints=false"]


def number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def epochs_of(run_dir: Path) -> list[dict]:
    """RUN_DIR/metrics.csv of `hgpose train`: one dict of numbers per epoch."""
    with open(run_dir / "metrics.csv") as f:
        return [{k: number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def last_epoch(run_dir: Path) -> dict:
    rows = epochs_of(run_dir)
    return {**rows[-1], "epochs": len(rows)}


def gpu_count(check: Check) -> int:
    return int(check.result_of("device").get("result", {}).get("gpu_count", 0))


def part_ddp(check: Check, record: dict) -> None:
    """torchrun with 1 process (2 with >= 2 GPUs): an all-reduce, then `hgpose train`."""
    s, record["rows"] = check.s, []
    for procs in [1] + ([2] if gpu_count(check) >= 2 else []):
        row = {"processes": procs}
        record["rows"].append(row)
        try:  # a broken process group is worth knowing, and `hgpose train` may still run
            collective = check.worker("collective", {}, f"ddp{procs}_allreduce", torchrun=procs)
            row.update(collective[0] if collective else {"error": "the all-reduce reported nothing"})
        except StepFailed as e:
            row["error"] = str(e)
            record["status"] = "partial"
        run_dir = check.work / f"ddp-{procs}"
        shutil.rmtree(run_dir, ignore_errors=True)
        batch = s["ddp_batch"]
        check.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={procs}", "-m", "hgpose", "train", str(check.store),
                    "--out", str(run_dir), "--epochs", "1", "--batch-size", str(batch), "--set",
                    *train_overrides(check, batch),
                    f"data.train_limit={procs * batch * s['ddp_steps']}", f"data.val_limit={batch}"],
                   f"ddp{procs}_train")
        epoch = last_epoch(run_dir)
        world = json.loads((run_dir / "run.json").read_text())["world_size"]
        row.update(world_size=world, img_s=epoch["img_per_s"], train_seconds=epoch["seconds"],
                   steps=s["ddp_steps"], batch=batch)


def plan_training(check: Check, n_train: int) -> dict:
    """Mode, batch and epochs for `train_seconds` of the thesis network. The mode is the one
    that gets through the most crops in that time, its first (compiling) step counted against
    it; epochs follow from its img/s (x0.8: validation, loader start-up). Should the estimate
    be off, the run is stopped at the time limit anyway (after its first epoch)."""
    s, seconds = check.s, check.s["train_seconds"]
    options = []
    for part in ("train_eager", "train_compiled"):
        for row in check.result_of(part).get("rows", []):
            if row["model"] == "thesis" and row.get("img_s"):
                overhead = row["first_pass_s"] if "compile" in row["mode"] else 0.0
                options.append((row["img_s"] * max(seconds - overhead, 0.0), row))
    if not options:  # no speed figure: the presets' mode, and the time limit decides
        return {"mode": "bf16+cl", "batch": s["train_batches"][0], "epochs": MAX_EPOCHS,
                "train_limit": 0, "estimated_img_s": None}
    crops, row = max(options, key=lambda option: option[0])
    crops *= 0.8
    # A run of a few minutes needs optimizer steps more than the last per cent of throughput.
    batch = min(row["batch"], s["real_batch_cap"])
    epochs = int(max(1, min(crops // max(n_train, 1), MAX_EPOCHS)))
    limit = int(max(crops, batch)) if crops < n_train else 0
    return {"mode": row["mode"], "batch": batch, "epochs": epochs, "train_limit": limit,
            "estimated_img_s": row["img_s"]}


# "auto" is bf16 on a GPU that has it (every GPU this check is meant for), fp32 in the
# CPU dry-run; the tables' amp column says which ran.
MODE_SETTINGS = {"fp32": ["precision=fp32", "channels_last=false"],
                 "bf16+cl": ["precision=auto", "channels_last=true"],
                 "bf16+cl+compile": ["precision=auto", "channels_last=true", "compile=true"]}


def part_real_train(check: Check, record: dict) -> None:
    """The thesis network at full width on LSPET, with the short-run recipe of `hgpose demo`
    (Gaussian sigma-2 targets with a peak weight, Adam): the thesis recipe proper stays on the
    "predict zero everywhere" plateau far longer than a few minutes (docs/training.md)."""
    from hgpose.demo import DEMO_OVERRIDES

    n_train = json.loads((check.store / "manifest.json").read_text())["splits"]["train"]
    plan = plan_training(check, n_train)
    record["result"] = {"plan": plan, "n_train": n_train}
    shutil.rmtree(check.run_dir, ignore_errors=True)
    overrides = DEMO_OVERRIDES + MODE_SETTINGS[plan["mode"]] + train_overrides(check, plan["batch"])
    if plan["train_limit"]:
        overrides.append(f"data.train_limit={plan['train_limit']}")
    overrides = [f"{k}={v}" for k, v in dict(o.split("=", 1) for o in overrides).items()]  # last wins
    record["result"]["overrides"] = overrides
    stopped = check.hgpose(
        "train", str(check.store), "--out", str(check.run_dir), "--preset", "thesis",
        "--epochs", str(plan["epochs"]), "--batch-size", str(plan["batch"]), "--set", *overrides,
        step="real_train", stop_after=check.s["train_seconds"],
        may_stop=lambda: (check.run_dir / "metrics.csv").is_file())
    epoch = last_epoch(check.run_dir)
    scores = [r["val_pck"] for r in epochs_of(check.run_dir) if r.get("val_pck") is not None]
    best = max(scores, default=None)
    record["result"].update(stopped_at_time_limit=stopped, epochs=epoch["epochs"],
                            img_s=epoch["img_per_s"], best_val_pck=best, run=str(check.run_dir))


def needs_run(check: Check) -> str | None:
    from hgpose.runs import RunDir

    if not RunDir(check.run_dir).weights("last").is_file():
        return f"needs the trained network of real_train ({check.run_dir})"
    return None


def device_args(check: Check) -> list[str]:
    return ["--device", check.s["device"], "--batch-size", str(check.s["explain_batch"]), "--no-progress"]


def part_real_evaluate(check: Check, record: dict) -> None:
    out = check.work / "real-evaluate"
    shutil.rmtree(out, ignore_errors=True)
    check.hgpose("evaluate", str(check.run_dir), "--data", str(check.store), "--split", "test",
                 "--out", str(out), *device_args(check), step="real_evaluate")
    m = json.loads((out / "metrics.json").read_text())
    record["result"] = {"n_images": m["n_images"], "pck@0.2": m["pck@0.2"],
                        "pck_thesis": m["pck_thesis"], "coco_AP": (m.get("coco") or {}).get("AP"),
                        "metrics": str(out / "metrics.json")}


def part_real_explain(check: Check, record: dict) -> None:
    out = check.out / "real-report"
    shutil.rmtree(out, ignore_errors=True)
    check.hgpose("explain", str(check.run_dir), "--data", str(check.store), "--split", "train",
                 "--out", str(out), "--only", "pca,kmeans,ablation", *device_args(check),
                 step="real_explain")
    e = json.loads((out / "explain.json").read_text())
    pca, kmeans = e["pca"]["subsets"]["all"], e["kmeans"]["subsets"]["all"]
    chosen = next(k for k in kmeans["per_k"] if k["k"] == kmeans["chosen_k"])
    ablation = e["ablation"]["summary"]["all"]
    record["result"] = {
        "crops": e["data"]["crops"], "pc1": pca["ratios"][0],
        "components_for_95": pca["components_for"]["0.95"], "kmeans_k": kmeans["chosen_k"],
        "silhouette": chosen["silhouette"], "pck_with_skips": ablation["mean_with_skips"],
        "pck_without_skips": ablation["mean_without_skips"], "report": str(out / "report.html")}


PARTS = [
    Part("device", "1 device and versions", part_device),
    Part("real_prepare", "5 prepare LSPET", part_real_prepare),
    Part("train_eager", "2 training, eager", speed_part("train", ["bf16+cl", "fp32"])),
    Part("train_compiled", "2 training, torch.compile",
         speed_part("train", ["bf16+cl+compile"], "train_eager")),
    Part("inference_eager", "3 inference, eager", speed_part("inference", ["bf16+cl", "fp32"])),
    Part("inference_compiled", "3 inference, torch.compile",
         speed_part("inference", ["bf16+cl+compile"], "inference_eager")),
    Part("ddp", "4 torchrun (DDP)", part_ddp, needs_store),
    Part("real_train", "5 train on LSPET", part_real_train, needs_store),
    Part("real_evaluate", "5 evaluate the test crops", part_real_evaluate, needs_run),
    Part("real_explain", "5 explain (PCA, K-means, ablation)", part_real_explain, needs_run),
]
PART_NAMES = [p.name for p in PARTS]


def run_part(check: Check, part: Part, inject: str | None) -> dict:
    """One part within its budget; whatever happens is recorded and the check goes on."""
    record = {"name": part.name, "title": part.title, "status": "ok", "error": None,
              "budget_s": round(check.budgets[part.name], 1)}
    check.report["parts"][part.name] = record
    reason = part.needs(check) if part.needs and not inject else None
    if reason:
        record.update(status="skipped", error=reason, seconds=0.0)
        return record
    start = time.perf_counter()
    check.deadline = start + check.budgets[part.name]
    check.partial_rows = []
    try:
        if inject:
            check.worker("inject", {"inject": inject}, part.name)
        else:
            part.run(check, record)
    except PartTimeout as e:
        record.update(status="timeout", error=str(e))
    except StepFailed as e:
        record.update(status="failed", error=str(e))
    except Exception as e:  # a bug in the check itself must not cost the other parts either
        record.update(status="failed", error=one_line(e))
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


# --- reports -----------------------------------------------------------------------------------

def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def md_header(report: dict) -> list[str]:
    d = report["parts"].get("device", {}).get("result") or {}
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in d.get("gpus", [])) or "no GPU"
    smi = d.get("nvidia_smi")
    driver = smi[0].split(",")[1].strip() if isinstance(smi, list) and smi else "–"
    kind = "CPU dry-run (tiny sizes: the figures say nothing about speed)" if report["dry_run"] else "GPU"
    return [f"# hgpose GPU check: {gpus}, {report['started'][:10]}", "",
            f"{kind}; torch {d.get('torch', '–')}, CUDA {d.get('cuda') or '–'}, cuDNN "
            f"{d.get('cudnn') or '–'}, NCCL {d.get('nccl', '–')}, driver {driver}, triton "
            f"{d.get('triton') or '–'}, {d.get('cpu_cores', '–')} CPU cores; total "
            f"{fmt(report.get('seconds'))} s ({fmt(report.get('cpu_seconds'))} s of CPU).", ""]


def md_parts(report: dict) -> list[str]:
    lines = ["| part | status | seconds / budget | error |", "|---|---|---|---|"]
    for r in report["parts"].values():
        lines.append(f"| {r['title']} | {r['status']} | {fmt(r.get('seconds'))} / {fmt(r['budget_s'])} "
                     f"| {(r.get('error') or '').replace('|', '/')} |")
    return lines


def md_speed(report: dict) -> list[str]:
    rows = [r for p in PART_NAMES if p.startswith(("train", "inference"))
            for r in report["parts"].get(p, {}).get("rows", [])]
    lines = ["| network | task | mode | batch | img/s | peak GiB | first pass s | batches tried |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r or "error" in r:
            note = r.get("skipped") or r.get("error")
            lines.append(f"| {r['model']} | {r['task']} | {r['mode']} | | | | | {note} |")
            continue
        tried = ", ".join(f"{t['batch']}: {fmt(t['img_s'])}" if "img_s" in t else f"{t['batch']}: error"
                          for t in r["tried"])
        lines.append(f"| {r['model']} | {r['task']} | {r['mode']} ({r['amp']}) | {r['batch']} | "
                     f"{fmt(r['img_s'])} | {fmt(r['peak_gib'])} | {fmt(r['first_pass_s'])} | {tried} |")
    return lines


def md_ddp(report: dict) -> list[str]:
    lines = ["| processes | backend | all-reduce sum (expected) | world size | train img/s (1 epoch, "
             "start-up included) |", "|---|---|---|---|---|"]
    for r in report["parts"].get("ddp", {}).get("rows", []):
        lines.append(f"| {r['processes']} | {r.get('backend', '–')} | {fmt(r.get('sum'))} "
                     f"({fmt(r.get('expected'))}) | {fmt(r.get('world_size'))} | {fmt(r.get('img_s'))} |")
    return lines


def md_real(report: dict) -> list[str]:
    get = lambda part: report["parts"].get(part, {}).get("result") or {}
    p, t, e, x = get("real_prepare"), get("real_train"), get("real_evaluate"), get("real_explain")
    plan, splits = t.get("plan", {}), p.get("splits", {})
    pck, thesis = e.get("pck@0.2", {}), e.get("pck_thesis", {})
    return [
        "| LSPET, thesis network | |", "|---|---|",
        f"| crops train / val / test | {splits.get('train', '–')} / {splits.get('val', '–')} / {splits.get('test', '–')} |",
        f"| training | {plan.get('mode', '–')}, batch {plan.get('batch', '–')}, {t.get('epochs', '–')} epochs, "
        f"{fmt(t.get('img_s'))} img/s{' (stopped at the time limit)' if t.get('stopped_at_time_limit') else ''} |",
        f"| best val thesis PCK | {fmt(t.get('best_val_pck'))} |",
        f"| test PCK@0.2 box / torso | {fmt(pck.get('bbox'))} / {fmt(pck.get('torso'))} |",
        f"| test thesis PCK all / visible / limbs | {fmt(thesis.get('all'))} / {fmt(thesis.get('visible'))} / {fmt(thesis.get('limbs'))} |",
        f"| latent PCA: PC1 share, components for 95 % | {fmt(x.get('pc1'))}, {fmt(x.get('components_for_95'))} |",
        f"| K-means: chosen K (silhouette) | {fmt(x.get('kmeans_k'))} ({fmt(x.get('silhouette'))}) |",
        f"| skip ablation: PCK with / without skips | {fmt(x.get('pck_with_skips'))} / {fmt(x.get('pck_without_skips'))} |",
        f"| report | {x.get('report', '–')} |",
    ]


def markdown(report: dict) -> str:
    sections = [md_header(report), md_parts(report), ["", "## Speed (training and inference)", ""],
                md_speed(report), ["", "## torchrun", ""], md_ddp(report),
                ["", "## Real people (part 5)", ""], md_real(report)]
    return "\n".join(line for section in sections for line in section) + "\n"


def write_reports(check: Check) -> None:
    from hgpose.io import write_bytes, write_json

    write_json(check.out / "gpu_check.json", check.report)
    write_bytes(check.out / "gpu_check.md", markdown(check.report).encode())


# --- command line --------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="parts: " + ", ".join(PART_NAMES))
    parser.add_argument("--out", help="folder for gpu_check.json, gpu_check.md, logs/ and work/")
    parser.add_argument("--lspet", default=None, metavar="PATH",
                        help="the LSPET folder (joints.mat + images/) (default: ../shared/data/lspet)")
    parser.add_argument("--minutes-real", type=float, default=2.0, metavar="N",
                        help="minutes of training on LSPET in part 5 (default: 2)")
    parser.add_argument("--dry-run", action="store_true", help="every part on the CPU at tiny sizes")
    parser.add_argument("--only", default=",".join(PART_NAMES), metavar="PARTS",
                        help="comma-separated parts to run (default: all)")
    parser.add_argument("--budget", action="append", default=[], metavar="PART=SECONDS",
                        help="change a part's time budget (repeatable)")
    parser.add_argument("--inject", action="append", default=[], metavar="PART=fail|hang",
                        help="for testing the check: make a part fail or hang (repeatable)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None:
        check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.out:
        parser.error("--out DIR is required")
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    named = args.only + [b.partition("=")[0] for b in args.budget + args.inject]
    unknown = sorted(set(named) - set(PART_NAMES))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PART_NAMES)}")
    for b in args.budget:
        try:
            float(b.partition("=")[2])
        except ValueError:
            parser.error(f"--budget {b}: expected PART=SECONDS, e.g. train_compiled=150")
    args.inject = dict(i.partition("=")[::2] for i in args.inject)
    if set(args.inject.values()) - {"fail", "hang"}:
        parser.error("--inject: expected PART=fail or PART=hang")
    if args.minutes_real <= 0:
        parser.error(f"--minutes-real {args.minutes_real}: give a positive number of minutes")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.job)
    check = Check(args)
    check.logs.mkdir(parents=True, exist_ok=True)
    chosen = [p for p in PARTS if p.name in args.only]
    planned = sum(check.budgets[p.name] for p in chosen)
    print(f"[gpu-check] {len(chosen)} parts, at most {planned / 60:.1f} min"
          + (" -- over ten minutes" if planned > TEN_MINUTES and not check.dry else ""), flush=True)
    start = time.perf_counter()
    try:
        for part in chosen:
            record = run_part(check, part, args.inject.get(part.name))
            print(f"[gpu-check] {part.title}: {record['status']} in {record['seconds']} s"
                  + (f" -- {record['error']}" if record["error"] else ""), flush=True)
            check.report["seconds"] = round(time.perf_counter() - start, 1)
            write_reports(check)
    finally:
        check.temp.cleanup()
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    check.report["cpu_seconds"] = round(sum(u.ru_utime + u.ru_stime for u in used), 1)
    write_reports(check)
    print(f"[gpu-check] {check.report['seconds']} s ({check.report['cpu_seconds']} s of CPU); "
          f"{check.out / 'gpu_check.md'}")
    return 0 if all(r["status"] == "ok" for r in check.report["parts"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

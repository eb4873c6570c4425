"""Engine benchmark: the same federated workload on five engines, one table, one command.

    python benchmarks/engine.py [--rounds 20] [--repeat 3] [--pfl-python /path/to/venv/bin/python]
    python benchmarks/engine.py --scale      # 1000 clients, 10 % per round, 12 rounds,
                                             # per-client against vectorized
    python benchmarks/engine.py --scale --population 10000 --per-round 1000 \
        --dataset synthetic --model mlp [--nodes 2]   # generated devices, offline
    python benchmarks/engine.py --no-sgd     # (b), (b1), (bf), (b1f) with no-op SGD steps

Workload: digits, the small CNN (``digits-cnn``, 38,282 parameters), 100 IID clients, all of
them training every round, 5 local SGD steps on batches of 16 drawn with replacement, FedAvg,
central evaluation only, 20 rounds. Configurations, each in its own process:

  (a)  plain loop     the same training in one process (fedsim's data, batches and SGD steps)
  (b)  fedsim         ``fedsim run --engine ray``, one actor per core, each client trained
                      on its own (``engine.vectorize = "off"``)
  (b1) fedsim 1 actor ``fedsim run --engine ray`` with a single actor (per-client)
  (bv), (b1v)         (b) and (b1) with vectorized clients (``engine.vectorize = "on"``): each
                      actor trains its batch of clients as one ``torch.func.vmap`` computation
  (bf), (b1f)         the same with ``engine.fold_replies = true``: each actor sums its clients'
                      replies before they travel, as pfl's workers do (opt-in; equal within
                      float tolerance, not bit for bit)
  (bvf)               (bv) with folded replies: vectorized clients whose replies each actor sums
  (c)  flower         ``fedsim run --engine flower`` (Flower's simulation through ``flwr run``)
  (d)  pfl            pfl-research, one worker per core via torchrun (needs a Python with
                      ``pfl`` installed: ``--pfl-python``; skipped when there is none)

Reported per configuration: steady-state seconds per round (mean of rounds 3..N, each round
including its central evaluation), start-up (launch until the first round starts), total wall
time, and the peak memory of the whole process tree (every process carrying this run's tag:
driver, Ray, its workers, Flower's SuperLink), as summed RSS (every 0.1 s) and PSS (read at
new RSS peaks, at most every 2 s: reading it costs the measured engines CPU). Then the serial
overhead per client call, ((b1) - (a)) per round / clients, and the goals, for fedsim's default
(one reply per client) and for folded replies, and the vectorized goals: (bv)/(d) <= 0.6 and
(bv)/(a) <= 0.4.

``--no-sgd`` runs fedsim's four configurations with a ClientApp whose SGD steps are a no-op
(``benchmarks/no_sgd_client.py``): a round then lasts what the engine and the ServerApp cost,
without the noise of 100 clients' training, and is reported per round and per client.

``--scale`` runs ``--population`` clients, ``--per-round`` of them sampled each round, per-client
against vectorized, with one actor per core, and prints each run's seconds per round and the RSS
of its processes after chosen rounds (flat: within a few per cent after round 2). The synthetic
datasets (``fedsim/tasks/synthetic.py``) generate each client's data on demand, so 10,000 clients
need no download. ``--nodes 2`` starts a local two-node ``ray.cluster_utils.Cluster`` (one core
per node) that the run joins through ``engine.ray_address``, and reports the driver's own RSS
apart from the cluster's processes: the driver never holds the clients' data.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
TAG = "FEDSIM_BENCH_TAG"

WORKLOAD = """\
name = "engine-bench"
seed = 0

[task]
dataset = "{dataset}"
model = "{model}"
num_clients = {clients}
partitioner = "{partitioner}"
local_test_fraction = 0.0

[strategy]
name = "fedavg"

[train]
rounds = {rounds}
clients_per_round = {per_round}
local_steps = 5
batch_size = 16
batch_sampling = "replacement"
lr = 0.05

[eval]
central_every = 1
federated_every = 0

[output]
plots = false
checkpoint_every = 0
{engine}
"""

SCALE_MODELS = {"digits": "digits-cnn"}  # 8x8 digits; the 28x28 datasets use fedsim's "cnn"


def default_model(dataset: str) -> str:
    """The benchmark's model for ``dataset``: digits-cnn, mlp for flat features, else cnn."""
    if dataset in SCALE_MODELS:
        return SCALE_MODELS[dataset]
    return "mlp" if len(dataset_source(dataset).input_shape) == 1 else "cnn"


def default_partitioner(dataset: str) -> str:
    """natural where the dataset comes divided into clients (femnist, synthetic), else iid."""
    return "natural" if dataset_source(dataset).natural_split else "iid"


@functools.cache
def dataset_source(dataset: str):
    """The data source of ``dataset`` (built lazily: hub data is not downloaded here)."""
    sys.path.insert(0, str(REPO))
    from fedsim.config.schema import TaskConfig
    from fedsim.tasks.datasets import DATASETS

    return DATASETS.get(dataset)(TaskConfig(dataset=dataset, partitioner="natural"), 0)


PROFILE = """
[engine]
num_cpus = {cpus}
ray_address = "{ray_address}"
fold_replies = {fold}
vectorize = "{vectorize}"

[[engine.profiles]]
name = "cpu"
actors = {actors}
num_cpus = 1
"""


# ------------------------------------------------------------------------ process-tree memory
class TreeSampler:
    """Samples the summed RSS (and, rarely, PSS) of every process carrying this run's tag.

    RSS comes from ``/proc/<pid>/statm`` (about 10 us a process) every ``interval``. PSS needs
    the kernel to walk every page table (``smaps_rollup``, about 9 ms for a process that has
    imported torch), so it is read only when the summed RSS reaches a new peak, at most every
    ``pss_every`` seconds: sampling it every tick would take a third of a core from a
    10-process engine on 2 cores and slow exactly the engines with the most processes. The
    tagged processes are looked up again every ``rescan_every`` seconds, not every tick.
    """

    def __init__(self, tag: str, watch_file: Path | None = None, interval: float = 0.1,
                 pss_every: float = 2.0, rescan_every: float = 1.0) -> None:
        self.tag, self.watch_file, self.interval = tag, watch_file, interval
        self.pss_every, self.rescan_every = pss_every, rescan_every
        self.peak_rss = self.peak_pss = 0
        self.first_line_at: float | None = None
        self.samples: list[tuple[float, int]] = []
        self.root: psutil.Process | None = None  # the launched process itself, once known
        self.root_samples: list[tuple[float, int]] = []  # its own RSS
        self.line_times: list[float] = []  # when each line of watch_file appeared
        self._read = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _procs(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(TAG) == self.tag:
                    found.append(proc)
        return found

    def _run(self) -> None:
        procs: list[psutil.Process] = []
        scanned = pss_at = 0.0
        while not self._stop.wait(self.interval):
            now = time.time()
            self._watch(now)
            if now - scanned >= self.rescan_every:
                procs, scanned = self._procs(), now
            rss = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            self.samples.append((now, rss))
            if self.root is not None:
                with contextlib.suppress(psutil.Error):
                    self.root_samples.append((now, self.root.memory_info().rss))
            if rss > self.peak_rss:
                self.peak_rss = rss
                if now - pss_at >= self.pss_every:
                    pss_at = now
                    self.peak_pss = max(self.peak_pss, self._pss(procs))

    def _watch(self, now: float) -> None:
        """Note when new complete lines reach ``watch_file`` (a metrics row per round)."""
        if self.watch_file is None or not self.watch_file.exists():
            return
        with open(self.watch_file, "rb") as f:
            f.seek(self._read)
            new = f.read()
        complete = new.rfind(b"\n") + 1
        self._read += complete
        self.line_times.extend([now] * new[:complete].count(b"\n"))
        if self.first_line_at is None and self.line_times:
            self.first_line_at = now

    @staticmethod
    def _pss(procs: list[psutil.Process]) -> int:
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                total += getattr(info, "pss", info.rss)
        return total

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def launch(cmd: list[str], env_extra: dict[str, str], watch: Path | None,
           log: Path) -> tuple[float, float, TreeSampler]:
    """Run ``cmd`` with a fresh tag; return (launch time, wall seconds, sampler)."""
    tag = uuid.uuid4().hex
    env = dict(os.environ, **env_extra, **{TAG: tag})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    with TreeSampler(tag, watch) as sampler, open(log, "w") as out:
        t0 = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        with contextlib.suppress(psutil.Error):
            sampler.root = psutil.Process(proc.pid)
        proc.wait()
        wall = time.time() - t0
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}): "
                           + " | ".join(line.strip()[:160] for line in tail))
    return t0, wall, sampler


def steady(round_seconds: list[float]) -> float:
    tail = round_seconds[2:] or round_seconds
    return sum(tail) / len(tail)


# ---------------------------------------------------------------------------- configurations
def run_fedsim(work: Path, name: str, engine: str, rounds: int, clients: int, per_round: int,
               actors: int, fold: bool = False, no_sgd: bool = False, vectorize: str = "off",
               dataset: str = "digits", model: str = "", ray_address: str = "") -> dict:
    cpus = 0 if ray_address else os.cpu_count() or 1  # a cluster's nodes bring their CPUs
    extra = PROFILE.format(cpus=cpus, actors=actors, fold=str(fold).lower(),
                           vectorize=vectorize, ray_address=ray_address) \
        if engine == "ray" else ""
    config = work / f"{name}.toml"
    config.write_text(WORKLOAD.format(clients=clients, rounds=rounds, per_round=per_round,
                                      engine=extra, dataset=dataset,
                                      model=model or default_model(dataset),
                                      partitioner=default_partitioner(dataset)))
    out = work / name
    metrics = out / "metrics.jsonl"
    program = [str(REPO / "benchmarks" / "no_sgd_client.py")] if no_sgd else ["-m", "fedsim.cli"]
    cmd = [sys.executable, *program, "run", str(config), "--engine", engine, "--out", str(out)]
    env = {"FLWR_HOME": str(work / "flwr-home")}
    if no_sgd:  # the actors import the no-op ClientApp from benchmarks/
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "benchmarks"),
                                             os.environ.get("PYTHONPATH", "")])
    t0, wall, sampler = launch(cmd, env, metrics, work / f"{name}.log")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()][1:]
    return {"steady": steady([r["round_seconds"] for r in rows]),
            "startup": (sampler.first_line_at or t0) - t0, "wall": wall,
            "rss": sampler.peak_rss, "pss": sampler.peak_pss,
            "acc": rows[-1]["central_accuracy"], "samples": sampler.samples, "t0": t0,
            "rows": rows, "root_samples": sampler.root_samples, "actors": actors_report(out),
            "line_times": sampler.line_times}


def actors_report(run_dir: Path) -> list[dict]:
    """The run's ``actors.json`` (empty where the engine writes none)."""
    path = run_dir / "actors.json"
    return json.loads(path.read_text()) if path.exists() else []


PLAIN = r"""
import json, sys, time
t_launch = time.time()
import numpy as np, torch
torch.set_num_threads(1)
from clients.runtime import round_seed
from fedsim.config import load_config
from fedsim.tasks.task import central_test, client_split, initial_arrays, new_model
from fedsim.tasks.training import LocalBatches, evaluate, sgd_steps

cfg = load_config(sys.argv[1])
task, t = cfg.task, cfg.train
data = [client_split(task, cfg.seed, pid)[0] for pid in range(task.num_clients)]
test = central_test(task, cfg.seed)
model = new_model(task)
model.load_state_dict(initial_arrays(task, cfg.seed).to_torch_state_dict())
glob = {k: v.clone() for k, v in model.state_dict().items()}
t_start, times = time.time(), []
for rnd in range(1, t.rounds + 1):
    t_round = time.perf_counter()
    acc = {k: torch.zeros_like(v) for k, v in glob.items()}
    total = 0
    for pid in range(task.num_clients):
        model.load_state_dict(glob)
        batches = LocalBatches(data[pid], t.batch_size, t.batch_sampling,
                               round_seed(cfg.seed, pid, rnd, 0))
        sgd_steps(model, batches, t.local_steps, t.lr)
        n = len(data[pid])
        for k, v in model.state_dict().items():
            acc[k] += v * n
        total += n
    glob = {k: v / total for k, v in acc.items()}
    model.load_state_dict(glob)
    loss, accuracy = evaluate(model, test)
    times.append(time.perf_counter() - t_round)
print(json.dumps({"t_start": t_start, "times": times, "acc": accuracy}))
"""

PFL = r"""
import json, os, sys, time
t_launch = time.time()
import numpy as np, torch
torch.set_num_threads(1)
from torch import nn
from pfl.aggregate.simulate import SimulatedBackend
from pfl.algorithm.base import NNAlgorithmParams
from pfl.algorithm.federated_averaging import FederatedAveraging
from pfl.callback.base import TrainingProcessCallback
from pfl.callback.central_evaluation import CentralEvaluationCallback
from pfl.data.federated_dataset import FederatedDataset
from pfl.data.pytorch import PyTorchTensorDataset
from pfl.data.sampling import get_user_sampler
from pfl.hyperparam.base import NNEvalHyperParams, NNTrainHyperParams
from pfl.metrics import Metrics, Weighted
from pfl.model.pytorch import PyTorchModel

data = np.load(sys.argv[1])
rounds, out_path = int(sys.argv[2]), sys.argv[3]
np.random.seed(0)
torch.manual_seed(0)
clients = int(data["clients"])


class Net(nn.Module):  # fedsim's digits-cnn
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 64), nn.ReLU(),
            nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)

    def loss(self, x, y):
        return nn.functional.cross_entropy(self(x), y.long())

    @torch.no_grad()
    def metrics(self, x, y):
        logits = self(x)
        n = len(y)
        loss = float(nn.functional.cross_entropy(logits, y.long(), reduction="sum"))
        correct = float((logits.argmax(1) == y.long()).sum())
        return {"loss": Weighted(loss, n), "accuracy": Weighted(correct, n)}


net = Net()
init = [torch.from_numpy(data[f"init{i}"]) for i in range(len(net.state_dict()))]
net.load_state_dict(dict(zip(net.state_dict().keys(), init)))
users = {u: PyTorchTensorDataset((torch.from_numpy(data[f"x{u}"]),
                                  torch.from_numpy(data[f"y{u}"])), user_id=str(u))
         for u in range(clients)}
federated = FederatedDataset(lambda u: users[u],
                             get_user_sampler("minimize_reuse", list(range(clients))))
central = PyTorchTensorDataset((torch.from_numpy(data["xt"]), torch.from_numpy(data["yt"])))
model = PyTorchModel(net, local_optimizer_create=torch.optim.SGD,
                     central_optimizer=torch.optim.SGD(net.parameters(), lr=1.0))


class Clock(TrainingProcessCallback):
    def __init__(self):
        self.marks = []

    def on_train_begin(self, *, model):
        self.t_start = time.time()
        self.marks.append(time.perf_counter())
        return Metrics()

    def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):
        self.marks.append(time.perf_counter())
        return False, Metrics()


clock = Clock()
eval_params = NNEvalHyperParams(local_batch_size=4096)
FederatedAveraging().run(
    algorithm_params=NNAlgorithmParams(central_num_iterations=rounds,
                                       evaluation_frequency=10**6,
                                       train_cohort_size=clients, val_cohort_size=0),
    backend=SimulatedBackend(training_data=federated, val_data=None),
    model=model,
    model_train_params=NNTrainHyperParams(local_num_epochs=1, local_learning_rate=0.05,
                                          local_batch_size=16),  # 80 rows: 5 steps of 16
    model_eval_params=eval_params,
    callbacks=[CentralEvaluationCallback(central, eval_params, frequency=1), clock])
if int(os.environ.get("RANK", "0")) == 0:
    xt, yt = torch.from_numpy(data["xt"]), torch.from_numpy(data["yt"])
    with torch.no_grad():
        acc = float((net(xt).argmax(1) == yt.long()).float().mean())
    times = [b - a for a, b in zip(clock.marks, clock.marks[1:])]
    json.dump({"t_start": clock.t_start, "times": times, "acc": acc}, open(out_path, "w"))
"""


def run_script(work: Path, name: str, cmd: list[str], result: Path, env: dict) -> dict:
    t0, wall, sampler = launch(cmd, env, None, work / f"{name}.log")
    res = json.loads(result.read_text() if result.exists() else
                     (work / f"{name}.log").read_text().strip().splitlines()[-1])
    return {"steady": steady(res["times"]), "startup": res["t_start"] - t0, "wall": wall,
            "rss": sampler.peak_rss, "pss": sampler.peak_pss, "acc": res["acc"]}


def run_plain(work: Path, rounds: int, clients: int) -> dict:
    config = work / "plain.toml"
    config.write_text(WORKLOAD.format(clients=clients, rounds=rounds, per_round=clients,
                                      engine="", dataset="digits", model="digits-cnn",
                                      partitioner="iid"))
    script = work / "plain.py"
    script.write_text(PLAIN)
    return run_script(work, "plain", [sys.executable, str(script), str(config)],
                      work / "none.json", {})


LOCAL_STEPS, BATCH = 5, 16


def export_data(work: Path, clients: int) -> Path:
    """fedsim's partitions and initial model, for pfl (which cannot import flwr).

    pfl's local loop walks a user's dataset in epochs, so each user gets ``LOCAL_STEPS * BATCH``
    rows drawn with replacement from its partition and trains one epoch on them: 5 steps of
    exactly 16 rows, fedsim's workload. (Five epochs over a 14-row partition would be 5 steps of
    14 rows, about a tenth less compute than the other configurations do.)
    """
    import numpy as np

    from fedsim.config import config_from_dict
    from fedsim.tasks.task import central_test, client_split, initial_arrays

    cfg = config_from_dict({"task": {"dataset": "digits", "model": "digits-cnn",
                                     "num_clients": clients, "partitioner": "iid",
                                     "local_test_fraction": 0.0},
                            "train": {"clients_per_round": clients}})
    arrays = {"clients": np.array(clients)}
    for pid in range(clients):
        part = client_split(cfg.task, cfg.seed, pid)[0]
        rows = np.random.default_rng([cfg.seed, pid]).integers(0, len(part.y),
                                                               LOCAL_STEPS * BATCH)
        arrays[f"x{pid}"], arrays[f"y{pid}"] = part.x[rows], part.y[rows]
    test = central_test(cfg.task, cfg.seed)
    arrays["xt"], arrays["yt"] = test.x, test.y
    for i, value in enumerate(initial_arrays(cfg.task, cfg.seed).values()):
        arrays[f"init{i}"] = value.numpy()
    path = work / "digits.npz"
    np.savez(path, **arrays)
    return path


def run_pfl(work: Path, python: str, rounds: int, clients: int) -> dict:
    data = export_data(work, clients)
    script = work / "pfl_train.py"
    script.write_text(PFL)
    torchrun = str(Path(python).parent / "torchrun")
    result = work / "pfl.json"
    cmd = [torchrun, "--standalone", "--nnodes=1", f"--nproc_per_node={os.cpu_count() or 1}",
           str(script), str(data), str(rounds), str(result)]
    return run_script(work, "pfl", cmd, result, {"OMP_NUM_THREADS": "1"})


# ---------------------------------------------------------------------------------- report
def cpu_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def table(results: dict[str, dict]) -> str:
    head = (f"{'configuration':<34}{'steady s/round':>15}{'start-up s':>12}{'wall s':>9}"
            f"{'peak RSS MB':>13}{'peak PSS MB':>13}{'final acc':>11}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"{name:<34}  {r['error']}")
            continue
        lines.append(f"{name:<34}{r['steady']:>15.3f}{r['startup']:>12.2f}{r['wall']:>9.1f}"
                     f"{r['rss'] / 1e6:>13.0f}{r['pss'] / 1e6:>13.0f}{r['acc']:>11.4f}")
    return "\n".join(lines)


A, B, B1, C, D = ("(a) plain loop, 1 process", "(b) fedsim, 1 actor per core",
                  "(b1) fedsim, 1 actor", "(c) flower simulation", "(d) pfl, torchrun 1/core")
BF, B1F = "(bf) fedsim folded, 1 actor/core", "(b1f) fedsim folded, 1 actor"
BV, B1V = "(bv) fedsim vectorized, 1/core", "(b1v) fedsim vectorized, 1 actor"
BVF = "(bvf) fedsim vectorized+folded, 1/core"
# the vectorized goals (issue 21): (bv)/(d) and (bv)/(a)
BV_OVER_D_MAX, BV_OVER_A_MAX = 0.6, 0.4
VARIANTS = (("one reply per client", B, B1), ("folded replies", BF, B1F))
# the goals: serial overhead per client call (ms), (b)/(a), (c)/(b), (b)/(d)
SERIAL_MS_MAX, B_OVER_A_MAX, C_OVER_B_MIN, B_OVER_D_MAX = 0.8, 0.6, 3.0, 1.0


def goals(results: dict[str, dict], clients: int, b_key: str = B, b1_key: str = B1) -> str:
    def s(key: str) -> float | None:
        r = results.get(key)
        return None if r is None or "error" in r else r["steady"]

    a, b, b1, c, d = (s(k) for k in (A, b_key, b1_key, C, D))
    out = []
    if a is not None and b1 is not None:
        ms = (b1 - a) / clients * 1000
        out.append(f"serial overhead per client call ((b1)-(a))/{clients}: {ms:.2f} ms "
                   f"(goal <= {SERIAL_MS_MAX:g} ms: {'met' if ms <= SERIAL_MS_MAX else 'NOT met'})")
    if a is not None and b is not None:
        out.append(f"(b)/(a) = {b / a:.2f} (goal <= {B_OVER_A_MAX:g}: "
                   f"{'met' if b <= B_OVER_A_MAX * a else 'NOT met'})")
    if b is not None and c is not None:
        out.append(f"(c)/(b) = {c / b:.2f} (goal >= {C_OVER_B_MIN:g}: "
                   f"{'met' if c >= C_OVER_B_MIN * b else 'NOT met'})")
    if b is not None and d is not None:
        out.append(f"(b)/(d) = {b / d:.2f} (goal <= {B_OVER_D_MAX:g}: "
                   f"{'met' if b <= B_OVER_D_MAX * d else 'NOT met'})")
    rb, rc = results.get(b_key), results.get(C)
    if rb and rc and "error" not in rb and "error" not in rc:
        out.append(f"start-up (b) {rb['startup']:.1f} s vs (c) {rc['startup']:.1f} s (goal: no "
                   f"slower than Flower: {'met' if rb['startup'] <= rc['startup'] else 'NOT met'})")
    return "\n".join(out)


def vectorized_goals(passes: dict[str, list[dict]]) -> str:
    """(bv)/(d), (bv)/(a) and the vectorized speed-ups (b)/(bv), (b1)/(b1v), pass by pass
    (one value per pass, median last)."""
    figures = [("(bv)/(d)", BV, D, BV_OVER_D_MAX), ("(bv)/(a)", BV, A, BV_OVER_A_MAX),
               ("(bvf)/(d)", BVF, D, BV_OVER_D_MAX), ("(bvf)/(a)", BVF, A, BV_OVER_A_MAX),
               ("(bv)/(b)", BV, B, None), ("(b1v)/(b1)", B1V, B1, None)]
    out = []
    for name, top, bottom, goal in figures:
        pairs = [x["steady"] / y["steady"]
                 for x, y in zip(passes.get(top, []), passes.get(bottom, []), strict=False)
                 if "error" not in x and "error" not in y]
        if not pairs:
            continue
        median = statistics.median(pairs)
        verdict = "" if goal is None else \
            f"; goal <= {goal:g}: {'met' if median <= goal else 'NOT met'}"
        out.append(f"  {name:<12}{', '.join(f'{v:.2f}' for v in pairs)} "
                   f"(median {median:.2f}{verdict})")
    return "\n".join(out)


def paired_goals(passes: dict[str, list[dict]], clients: int, b_key: str = B,
                 b1_key: str = B1) -> str:
    """The goals' figures pass by pass, with their medians: the configurations of one pass run
    minutes apart, so a slow spell of the machine moves both sides of a ratio together."""
    figures = [("serial overhead ms", A, b1_key, lambda a, b1: (b1 - a) / clients * 1000,
                f"<= {SERIAL_MS_MAX:g}", lambda v: v <= SERIAL_MS_MAX),
               ("(b)/(a)", A, b_key, lambda a, b: b / a,
                f"<= {B_OVER_A_MAX:g}", lambda v: v <= B_OVER_A_MAX),
               ("(c)/(b)", b_key, C, lambda b, c: c / b,
                f">= {C_OVER_B_MIN:g}", lambda v: v >= C_OVER_B_MIN),
               ("(b)/(d)", D, b_key, lambda d, b: b / d,
                f"<= {B_OVER_D_MAX:g}", lambda v: v <= B_OVER_D_MAX)]
    out = []
    for name, first, second, figure, goal, met in figures:
        pairs = [figure(x["steady"], y["steady"])
                 for x, y in zip(passes.get(first, []), passes.get(second, []), strict=False)
                 if "error" not in x and "error" not in y]
        if pairs:
            values = ", ".join(f"{v:.2f}" for v in pairs)
            median = statistics.median(pairs)
            out.append(f"  {name:<20}{values} (median {median:.2f}; goal {goal}: "
                       f"{'met' if met(median) else 'NOT met'})")
    return "\n".join(out)


def default_pfl_python() -> str | None:
    for candidate in (os.environ.get("FEDSIM_PFL_PYTHON"), "/work/venv-pfl/bin/python"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def main_compare(args: argparse.Namespace, work: Path) -> None:
    cores = os.cpu_count() or 1
    runs = {
        A: lambda w: run_plain(w, args.rounds, args.clients),
        B: lambda w: run_fedsim(w, "b", "ray", args.rounds, args.clients, args.clients, cores),
        B1: lambda w: run_fedsim(w, "b1", "ray", args.rounds, args.clients, args.clients, 1),
        BV: lambda w: run_fedsim(w, "bv", "ray", args.rounds, args.clients, args.clients, cores,
                                 vectorize="on"),
        B1V: lambda w: run_fedsim(w, "b1v", "ray", args.rounds, args.clients, args.clients, 1,
                                  vectorize="on"),
        BVF: lambda w: run_fedsim(w, "bvf", "ray", args.rounds, args.clients, args.clients,
                                  cores, vectorize="on", fold=True),
        BF: lambda w: run_fedsim(w, "bf", "ray", args.rounds, args.clients, args.clients, cores,
                                 fold=True),
        B1F: lambda w: run_fedsim(w, "b1f", "ray", args.rounds, args.clients, args.clients, 1,
                                  fold=True),
        C: lambda w: run_fedsim(
            w, "c", "flower", args.rounds, args.clients, args.clients, cores),
    }
    if args.no_sgd:
        runs = {name: functools.partial(
            run_fedsim, name=short, engine="ray", rounds=args.rounds, clients=args.clients,
            per_round=args.clients, actors=actors, fold=fold, no_sgd=True)
            for name, short, actors, fold in ((B, "b", cores, False), (B1, "b1", 1, False),
                                              (BF, "bf", cores, True), (B1F, "b1f", 1, True))}
    pfl_python = None if args.no_sgd else args.pfl_python or default_pfl_python()
    if pfl_python:
        runs[D] = lambda w: run_pfl(w, pfl_python, args.rounds, args.clients)
    passes: dict[str, list[dict]] = {}
    print(f"before: {cpu_load()}", flush=True)
    for rep in range(args.repeat):  # interleaved, so slow spells of a shared machine spread out
        for name, fn in runs.items():
            if args.only and not any(name.startswith(f"({k})") for k in args.only.split(",")):
                continue
            folder = work / f"pass-{rep + 1}"
            folder.mkdir(exist_ok=True)
            try:
                outcome = fn(folder)
            except Exception as exc:  # noqa: BLE001 - report the others anyway
                outcome = {"error": str(exc)}
            passes.setdefault(name, []).append(outcome)
            print(f"  done {name} (pass {rep + 1}/{args.repeat}): {cpu_load()}", flush=True)
    results = {name: median_run(outcomes) for name, outcomes in passes.items()}
    if args.no_sgd:
        report_engine_alone(results, passes, args)
        return
    if not pfl_python:
        results[D] = {"error": "skipped: no Python with pfl "
                                               "(--pfl-python or FEDSIM_PFL_PYTHON)"}
    print(f"\nworkload: digits, digits-cnn, {args.clients} clients all training each round, "
          f"5 local steps of batch 16 with replacement, central evaluation only, "
          f"{args.rounds} rounds; steady = mean of rounds 3..{args.rounds}")
    print(table(results))
    if args.repeat > 1:
        print(f"median of {args.repeat} interleaved passes; steady s/round of every pass:")
        for name, outcomes in passes.items():
            values = ", ".join("failed" if "error" in o else f"{o['steady']:.3f}"
                               for o in outcomes)
            print(f"  {name:<34}{values}")
            for o in outcomes:
                if "error" in o:
                    print(f"    failed pass: {o['error'][:400]}")
        for label, b_key, b1_key in VARIANTS:
            if b_key in passes or b1_key in passes:
                figures = paired_goals(passes, args.clients, b_key, b1_key)
                print(f"pass by pass, {label}:\n{figures}")
    for label, b_key, b1_key in VARIANTS:
        if b_key in results or b1_key in results:
            what = "goals" if args.repeat == 1 else \
                "goals from the median passes (the pass-by-pass medians above are steadier)"
            print(f"{what}, {label}:\n{goals(results, args.clients, b_key, b1_key)}")
    figures = vectorized_goals(passes)
    if figures:
        print(f"vectorized clients (ratios of steady s/round):\n{figures}")
    print(f"after: {cpu_load()}")


def report_engine_alone(results: dict[str, dict], passes: dict[str, list[dict]],
                        args: argparse.Namespace) -> None:
    """``--no-sgd``: what a round costs the engine and the ServerApp, per round and client."""
    print(f"\nengine alone (SGD steps a no-op): digits, digits-cnn, {args.clients} clients all "
          f"in every round, {args.rounds} rounds; steady = mean of rounds 3..{args.rounds}")
    for name, outcomes in passes.items():
        ok = [o["steady"] for o in outcomes if "error" not in o]
        best = results[name]
        if not ok:
            print(f"  {name:<34}failed: {best.get('error', '')[:200]}")
            continue
        print(f"  {name:<34}{best['steady'] * 1e3:7.1f} ms a round, "
              f"{best['steady'] * 1e3 / args.clients:.3f} ms a client (passes: "
              + ", ".join(f"{v * 1e3:.1f}" for v in ok) + ")")
    print(f"after: {cpu_load()}")


def median_run(outcomes: list[dict]) -> dict:
    """The pass with the median steady s/round (the lower middle one for an even count)."""
    ok = sorted((o for o in outcomes if "error" not in o), key=lambda o: o["steady"])
    return ok[(len(ok) - 1) // 2] if ok else outcomes[-1]


DIGITS_POOL = 1438  # digits' training pool: the most clients it can give an example each


def rss_after_rounds(samples: list[tuple[float, int]], t_rounds: list[float],
                     marks: list[int]) -> list[tuple[int, int]]:
    """(round, the last RSS sample taken before that round ended) for each mark."""
    found = []
    for k in marks:
        before = [rss for t, rss in samples if t <= t_rounds[k - 1]]
        if before:
            found.append((k, before[-1]))
    return found


def round_marks(rounds: int) -> list[int]:
    marks = (1, 2, 3, 5, 10, 20, 30, 40, rounds // 2, rounds)
    return sorted({k for k in marks if 1 <= k <= rounds})


def print_rss(title: str, points: list[tuple[int, int]]) -> None:
    """The RSS after each marked round and its change from round 2 (after warm-up) to the last
    one: flat means within a few per cent."""
    print(f"{title} (MB) after round: " + ", ".join(f"{k}: {rss / 1e6:.0f}" for k, rss in points))
    warm = [rss for k, rss in points if k >= 2]
    if len(warm) >= 2:
        print(f"  change from round {[k for k, _ in points if k >= 2][0]} to {points[-1][0]}: "
              f"{(warm[-1] - warm[0]) / warm[0] * 100:+.1f} %")


@contextlib.contextmanager
def local_cluster(nodes: int, cpus_per_node: int, tag: str):
    """A ``ray.cluster_utils.Cluster`` of ``nodes`` nodes on this machine (as tests/cluster
    makes it: a private temp folder, so no other Ray joins it), its processes tagged ``tag``;
    always shut down."""
    from ray.cluster_utils import Cluster

    root = tempfile.mkdtemp(prefix="fsb-", dir="/tmp")  # short: socket paths have a limit
    temp_dir = os.path.join(root, "ray")
    os.makedirs(temp_dir)
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", TAG)}
    os.environ.update({"RAY_TMPDIR": root, TAG: tag})  # inherited by every node process
    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=cpus_per_node, temp_dir=temp_dir, include_dashboard=False)
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=cpus_per_node, temp_dir=temp_dir)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)


def main_scale(args: argparse.Namespace, work: Path) -> None:
    """The scale run: ``--population`` clients, ``--per-round`` of them sampled each round,
    one actor per core, per-client (``engine.vectorize = "off"``) against vectorized
    (``"on"``), each with its seconds per round and its tree RSS after chosen rounds. With
    ``--nodes N`` (N > 1) the run joins a local N-node Ray cluster (``engine.ray_address``),
    and the driver's own RSS is reported apart from the cluster's processes."""
    clients, rounds = args.population, args.scale_rounds
    per_round = args.per_round or max(1, clients // 10)
    if args.dataset == "digits" and clients > DIGITS_POOL:
        raise SystemExit(f"--population {clients}: digits has {DIGITS_POOL} training examples, "
                         f"so at most {DIGITS_POOL} clients; use --dataset synthetic (generated "
                         "on demand, offline) for a larger population")
    model = args.model or default_model(args.dataset)
    print(f"before: {cpu_load()}", flush=True)
    cores = os.cpu_count() or 1
    cluster_ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    cluster_tag = uuid.uuid4().hex
    if args.nodes > 1:
        cluster_ctx = local_cluster(args.nodes, max(1, cores // args.nodes), cluster_tag)
    with cluster_ctx as cluster:
        actors = cores if cluster is None else args.nodes * max(1, cores // args.nodes)
        where = (f"fedsim engine, {actors} actors" if cluster is None else
                 f"fedsim engine on a local {args.nodes}-node Ray cluster, {actors} actors")
        for label, mode in (("per-client", "off"), ("vectorized", "on")):
            if mode not in args.modes.split(","):
                continue
            with TreeSampler(cluster_tag) as nodes_sampler:
                r = run_fedsim(work, f"scale-{mode}", "ray", rounds, clients, per_round, actors,
                               vectorize=mode, dataset=args.dataset, model=model,
                               ray_address=cluster.address if cluster else "")
            rows = r["rows"]
            print(f"scale, {label}: {clients} clients, {per_round} per round, {rounds} rounds "
                  f"on {args.dataset} with {model} ({where}, engine.vectorize = {mode})")
            print(f"steady s/round {r['steady']:.3f}; start-up {r['startup']:.1f} s; wall "
                  f"{r['wall']:.1f} s; peak RSS of the run's processes {r['rss'] / 1e6:.0f} MB, "
                  f"PSS {r['pss'] / 1e6:.0f} MB; final accuracy "
                  f"{rows[-1]['central_accuracy']:.4f}")
            print("s/round: " + ", ".join(f"{row['round_seconds']:.2f}" for row in rows))
            print(f"client calls answered vectorized: "
                  f"{sum(a.get('vectorized_calls', 0) for a in r['actors'])} of "
                  f"{per_round * rounds} training calls; actors on "
                  f"{len({a.get('ray_node_id') for a in r['actors']})} Ray node(s)")
            # round k is over when its metrics row appears (line k + 1; line 0 is round 0);
            # the last row is written as the engine stops, so its samples may see teardown
            t_rounds = r["line_times"][1:]
            marks = round_marks(min(len(rows), len(t_rounds)) - 1)
            if cluster is None:
                print_rss("tree RSS", rss_after_rounds(r["samples"], t_rounds, marks))
            else:
                print_rss("driver RSS", rss_after_rounds(r["root_samples"], t_rounds, marks))
                print_rss("cluster processes' RSS",
                          rss_after_rounds(nodes_sampler.samples, t_rounds, marks))
            print(f"after: {cpu_load()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--pfl-python", help="a Python with pfl installed (for (d))")
    parser.add_argument("--only", help="comma-separated subset, e.g. a,b1")
    parser.add_argument("--repeat", type=int, default=1,
                        help="interleaved passes; each configuration reports its median pass")
    parser.add_argument("--scale", action="store_true",
                        help="the scale run, per-client against vectorized")
    parser.add_argument("--population", type=int, default=1000,
                        help="--scale: clients in the population (10000: use --dataset "
                             "synthetic)")
    parser.add_argument("--per-round", type=int, default=0,
                        help="--scale: clients sampled per round (default: a tenth)")
    parser.add_argument("--scale-rounds", type=int, default=12, help="--scale: rounds")
    parser.add_argument("--dataset", default="digits",
                        help="--scale: the dataset (digits is bundled, the synthetic family "
                             "generated; hub datasets download once)")
    parser.add_argument("--model", default="",
                        help="--scale: the model (default: digits-cnn on digits, mlp on flat "
                             "features, else cnn)")
    parser.add_argument("--modes", default="off,on",
                        help="--scale: engine.vectorize modes to run (off: per-client, on)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="--scale: run on a local Ray cluster of this many nodes (driver "
                             "RSS reported apart)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-sgd", action="store_true",
                        help="fedsim's configurations with no-op SGD steps: the engine alone")
    args = parser.parse_args()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    work = Path(tempfile.mkdtemp(prefix="fedsim-bench-"))
    try:
        (main_scale if args.scale else main_compare)(args, work)
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Device profiles on a real GPU: where each actor lands, what it sees and how fast it trains.

    python benchmarks/gpu_placement.py [--rounds 10] [--clients 40]

Runs the engine benchmark's workload (digits, the digits CNN, 5 local steps of batch 16, every
client every round) on the fedsim Ray engine three ways, side by side in one process tree:
CPU actors only; actors sharing the GPU in quarters (``num_gpus = 0.25``); and both profiles
at once, half of the clients each. For each run it prints the steady seconds per round and the
final accuracy, and for each actor (from the run's ``actors.json``) its profile, the Ray
resources and GPU ids it was given, ``CUDA_VISIBLE_DEVICES``, the GPUs torch sees there and
the device ``train.device = auto`` trained on. Without CUDA the GPU runs still place their
actors on logical GPUs (``engine.num_gpus``) and train on the CPU; the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.engine import WORKLOAD  # noqa: E402 - the one workload of the benchmarks

CPU = """
[[engine.profiles]]
name = "cpu"
share = {share}
actors = {actors}
num_cpus = 1
"""

GPU = """
[[engine.profiles]]
name = "gpu-quarter"
share = {share}
actors = 4
num_cpus = {cpus}
num_gpus = 0.25
"""


def engine_table(profiles: str, gpus: float) -> str:
    return f"\n[engine]\ncompute_timer = \"wall\"\nnum_gpus = {gpus:g}\n{profiles}"


def configurations(cores: int, gpus: float) -> dict[str, str]:
    cpu_actors = max(1, min(4, cores - 1))
    gpu_cpus = max(0.25, min(1.0, (cores - 1) / 8))
    return {
        "CPU actors only": engine_table(CPU.format(share=1.0, actors=cpu_actors), gpus),
        "4 actors x 0.25 GPU": engine_table(GPU.format(share=1.0, cpus=gpu_cpus), gpus),
        "both profiles, half the clients each": engine_table(
            CPU.format(share=0.5, actors=cpu_actors) + GPU.format(share=0.5, cpus=gpu_cpus),
            gpus),
    }


def run(work: Path, name: str, engine: str, rounds: int, clients: int) -> dict:
    slug = "".join(c if c.isalnum() else "-" for c in name)
    config = work / f"{slug}.toml"
    config.write_text(WORKLOAD.format(clients=clients, rounds=rounds, per_round=clients,
                                      engine=engine))
    out = work / slug
    env = {**os.environ, "FLWR_HOME": str(work / "flwr-home"), "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
    proc = subprocess.run([sys.executable, "-m", "fedsim.cli", "run", str(config), "--engine",
                           "ray", "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    seconds = [r["round_seconds"] for r in rows][2:] or [r["round_seconds"] for r in rows]
    return {"steady": statistics.median(seconds), "acc": rows[-1]["central_accuracy"],
            "actors": json.loads((out / "actors.json").read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--gpus", type=float, default=0.0,
                        help="logical GPUs of the local Ray (0: detected; set it on a machine "
                             "without CUDA to see the placement alone)")
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if cuda else []
    print(f"torch {torch.__version__}; CUDA: {', '.join(names) if cuda else 'none'}; "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="fedsim-gpu-") as tmp:
        for name, engine in configurations(os.cpu_count() or 1, args.gpus).items():
            result = run(Path(tmp), name, engine, args.rounds, args.clients)
            if "error" in result:
                print(f"\n{name}: failed: {result['error']}")
                continue
            print(f"\n{name}: {result['steady']:.3f} s/round, final accuracy "
                  f"{result['acc']:.3f}")
            print(f"  {'profile':<12}{'resources':<26}{'gpu ids':<9}{'CUDA_VISIBLE':<14}"
                  f"{'torch GPUs':<11}{'trains on':<10}{'calls':>6}")
            for actor in result["actors"]:
                resources = ", ".join(f"{k} {v:g}" for k, v in
                                      sorted(actor["resources"].items()))
                print(f"  {actor['profile']:<12}{resources:<26}"
                      f"{','.join(actor['gpu_ids']) or '-':<9}"
                      f"{actor['cuda_visible_devices'] or '-':<14}"
                      f"{actor['torch_cuda_devices']:<11}{actor['auto_device']:<10}"
                      f"{sum(actor['served'].values()):>6}")


if __name__ == "__main__":
    main()

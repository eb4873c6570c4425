"""A stock Flower app under Flower's simulation and under ``fedsim simulate``, side by side.

    python benchmarks/flower_app.py [--app examples/flower-app] [--supernodes 8] [--rounds 8]
                                    [--passes 2]

The app (default: ``examples/flower-app``, FedAvg through ``Strategy.start`` on digits) runs
unchanged in both: under ``flwr run`` (Flower's simulation, Ray backend, one CPU per ClientApp
actor, as many actors as cores) and under :func:`fedsim.simulate` on the fedsim Ray engine (one
actor per core). The passes are interleaved (Flower, fedsim, Flower, fedsim, ...) so that a
change in the machine's load hits both. Both ServerApps run over the same
:class:`~fedsim.engine.metered_grid.MeteredGrid`, which times each round from one training
phase to the next (training, federated evaluation and the app's central evaluation); a
configuration's figure is the median over all rounds of all its passes, which leaves out
neither engine's start-up (Flower starts its actors in round 1, fedsim before it) and
stays robust to it. Prints one line per pass and the medians and their ratio (the goal is a
ratio of at least 3).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fedsim.flower_app import read_flower_app, run_config_overrides, run_under_flower  # noqa: E402
from fedsim.result import RunResult  # noqa: E402


def round_seconds(run_dir: Path) -> list[float]:
    return [r["round_seconds"] for r in RunResult.from_dir(run_dir).metrics
            if r.get("round_seconds") is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app", default=str(REPO / "examples" / "flower-app"))
    parser.add_argument("--supernodes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()

    from fedsim.simulation import simulate

    app = read_flower_app(args.app)
    sys.path.insert(0, str(app.path))
    config = run_config_overrides(app, [f"num-server-rounds={args.rounds}"])
    work = Path(tempfile.mkdtemp(prefix="fedsim-bench-flower-app-"))
    times: dict[str, list[float]] = {"flower": [], "fedsim": []}
    print(f"{app.name}: {args.supernodes} supernodes, {args.rounds} rounds, {args.passes} "
          f"interleaved passes; results under {work}")
    for index in range(args.passes):
        flower = run_under_flower(app, args.supernodes, config, work / f"flower-{index}")
        seconds = round_seconds(flower.run_dir)
        times["flower"] += seconds
        print(f"pass {index + 1} flower: median {statistics.median(seconds):.3f} s per round "
              f"(round 1 {seconds[0]:.1f} s; whole `flwr run` {flower.wall_seconds:.1f} s)",
              flush=True)
        started = time.monotonic()
        result = simulate(app.serverapp, app.clientapp, args.supernodes, run_config=config,
                          out=work / f"fedsim-{index}", progress=False, name=app.name,
                          app_paths=[str(app.path)])
        seconds = round_seconds(result.run_dir)
        times["fedsim"] += seconds
        print(f"pass {index + 1} fedsim: median {statistics.median(seconds):.3f} s per round "
              f"(round 1 {seconds[0]:.1f} s; whole call {time.monotonic() - started:.1f} s)",
              flush=True)
    flower_s, fedsim_s = (statistics.median(times[k]) for k in ("flower", "fedsim"))
    print(f"median seconds per round: flower {flower_s:.3f}, fedsim {fedsim_s:.3f}; "
          f"fedsim is {flower_s / fedsim_s:.2f}x faster (goal >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

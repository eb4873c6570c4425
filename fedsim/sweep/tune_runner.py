"""The trials of a sweep as Ray Tune trials, concurrently within one Ray instance.

Each trial is a function trainable holding one CPU (``tune.with_resources``) that runs one
fedsim run on the ``inprocess`` engine (why: ``fedsim.sweep.trial_run``) in a thread and
reports every round's row of its metrics.jsonl to Tune (``tune.report``) as the run writes
it, so Tune's schedulers (ASHA) see the rounds as they happen. At most ``concurrent`` trials
run at once, never more than the CPUs Ray was given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedsim.results.writer import MetricsTail, write_json_atomic
from fedsim.sweep.manifest import STOPPED_FILE, SweepManifest
from fedsim.sweep.trial_run import run_trial
from fedsim.sweep.trials import trial_dir

TRIAL_CPUS = 1
POLL_S = 0.2  # how often a trial looks for new rows in its metrics.jsonl
TUNE_FOLDER = "tune"  # Tune's own experiment state, inside the sweep folder (not used to resume)


def reported(row: dict[str, Any]) -> dict[str, Any]:
    """The scalar numbers of a metrics row (Tune's results; per-client lists are left out)."""
    return {k: v for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def trainable(config: dict[str, Any]) -> None:
    """One trial: run it in a thread and report each new round to Tune as it is written."""
    from ray import tune

    sweep_dir = Path(config["sweep_dir"])
    trial = SweepManifest.load(sweep_dir).trial(config["trial"])
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["code"] = run_trial(sweep_dir, trial)
        except BaseException as exc:  # noqa: BLE001 - raised again in the trial's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name=f"fedsim-trial-{trial.index}")
    worker.start()
    tail = MetricsTail(trial_dir(sweep_dir, trial))
    last_round, latest = 0, {}
    while True:
        worker.join(POLL_S)
        for row in tail.new_rows():
            latest.update(reported(row))  # a metric not evaluated this round keeps its value
            if row.get("round", 0) > last_round:
                last_round = row["round"]
                tune.report(dict(latest))
        if not worker.is_alive():
            break
    if "error" in outcome:
        raise outcome["error"]
    if outcome.get("code"):
        raise RuntimeError(f"trial {trial.index} ({trial.setting_label}, seed {trial.seed}) "
                           f"ended with exit code {outcome['code']}")


def asha_scheduler(asha: dict[str, Any], sweep_dir: Path):
    """Tune's ASHA on ``round``, which also leaves stopped.json in each trial it stops (so the
    tables and a resume know the trial ended early on purpose)."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    class MarkingASHA(AsyncHyperBandScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP and result.get("round", 0) < asha["max_t"]:
                folder = trial_dir(sweep_dir, SweepManifest.load(sweep_dir).trial(
                    trial.config["trial"]))
                write_json_atomic(folder / STOPPED_FILE, {
                    "round": result.get("round"), "metric": asha["metric"],
                    "value": result.get(asha["metric"]), "by": "ASHA"})
            return decision

    return MarkingASHA(time_attr="round", metric=asha["metric"], mode=asha["mode"],
                       max_t=asha["max_t"], grace_period=asha["grace_period"],
                       reduction_factor=asha["reduction_factor"], stop_last_trials=False)


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_only() -> None:
    """Make a local Ray take 127.0.0.1 as its node address, so its GCS, raylets and workers
    listen on the loopback only (``ray.init(_node_ip_address="127.0.0.1")`` alone is turned
    into the machine's reachable address). Ray reads this switch when it is imported, and
    its node address when it starts (``sweep_ray`` calls it before both when it can)."""
    os.environ[LOOPBACK_ENV] = "0"
    if "ray" in sys.modules:  # imported already: its constant was read, set it too
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


@contextlib.contextmanager
def sweep_ray(address: str, num_cpus: int) -> Iterator[None]:
    """One Ray for the whole sweep: the cluster at ``address``, else a local one on
    127.0.0.1 (``loopback_only``) without dashboard; shut down after (left alone if someone
    else started it)."""
    if not address:
        loopback_only()
    import ray

    from fedsim.engine.ray_engine import worker_env

    if ray.is_initialized():
        yield
        return
    # trials keep the sweep's working folder (Tune would move each into its own folder)
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    env = {**worker_env(), "RAY_CHDIR_TO_TRIAL_DIR": "0"}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.ERROR,
                              "log_to_driver": False}
    with warnings.catch_warnings():  # Ray 2.55's tip about future GPU hiding (see ray_engine)
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray",
                                category=FutureWarning)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def run_trials(sweep_dir: Path, manifest: SweepManifest, pending: list[int]) -> list[str]:
    """Run the ``pending`` trials through ``ray.tune.Tuner``; return the errors (one line
    per failed trial)."""
    from ray import tune

    from fedsim.sweep.trials import Trial

    def describe(tune_trial) -> Trial:
        return manifest.trial(tune_trial.config["trial"])

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            t = describe(trial)
            acc = (trial.last_result or {}).get("central_accuracy")
            shown = f", accuracy {acc:.4f}" if acc is not None else ""
            print(f"sweep: trial {t.index} done ({t.setting_label}, seed {t.seed}{shown})",
                  file=sys.stderr, flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            t = describe(trial)
            print(f"sweep: trial {t.index} failed ({t.setting_label}, seed {t.seed})",
                  file=sys.stderr, flush=True)

    scheduler = asha_scheduler(manifest.asha, sweep_dir) if manifest.asha else None
    # Tune's own tables would go to stdout, where fedsim sweep prints sweep.md; verbose=0 is
    # silent only with its classic output
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": TRIAL_CPUS}),
        param_space={"trial": tune.grid_search(pending), "sweep_dir": str(sweep_dir)},
        tune_config=tune.TuneConfig(max_concurrent_trials=manifest.concurrent,
                                    scheduler=scheduler, reuse_actors=False),
        run_config=tune.RunConfig(name=TUNE_FOLDER, storage_path=str(sweep_dir), verbose=0,
                                  callbacks=[Progress()]))
    results = tuner.fit()
    errors = []
    for result in results:
        if result.error is not None:
            t = manifest.trial(result.config["trial"])
            first = str(result.error).strip().splitlines()
            errors.append(f"trial {t.index} ({t.setting_label}, seed {t.seed}): "
                          f"{first[-1] if first else type(result.error).__name__}")
    return errors


def dump_errors(sweep_dir: Path, errors: list[str]) -> None:
    if errors:
        (Path(sweep_dir) / "errors.json").write_text(json.dumps(errors, indent=2) + "\n")

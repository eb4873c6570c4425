"""``fedsim sweep``: settings × seeds as Ray Tune trials, each an ordinary fedsim run.

- ``trials``: the trial list (configs × grid × samples × seeds);
- ``search``: sampled settings from Tune's search spaces (``lr=loguniform:1e-3:1``);
- ``manifest``: the sweep's own state (manifest.json), so a resume needs nothing of Tune's;
- ``trial_run``: one trial, run as ``fedsim run`` runs it (inprocess engine);
- ``tune_runner``: the trials on one Ray instance through ``ray.tune.Tuner`` (ASHA optional);
- ``table``: sweep.csv and sweep.md (mean ± std, min–max over seeds);
- ``commands``: the command line.
"""

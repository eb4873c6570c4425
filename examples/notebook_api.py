# %% [markdown]
# # fedsim from Python: three strategies on digits, accuracy against uplink
#
# Each cell below runs as it is in Jupyter (VS Code and Jupytext read the `# %%` markers), and the
# whole file runs as a script:
#
#     python examples/notebook_api.py
#
# It runs the shipped configs `fedavg`, `fedlion` and `zsignfedavg` (a CNN on scikit-learn's
# bundled digits, 30 non-IID clients, no download) for a few rounds each, prints a table and
# plots accuracy against the cumulative uplink. Environment variables make it smaller or faster:
# FEDSIM_EXAMPLE_ROUNDS (default 20), FEDSIM_EXAMPLE_ENGINE (default ray; inprocess needs no
# Ray), FEDSIM_EXAMPLE_OUT (results and plot folder, default results/notebook_api).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402

import fedsim  # noqa: E402

ROUNDS = int(os.environ.get("FEDSIM_EXAMPLE_ROUNDS", "20"))
ENGINE = os.environ.get("FEDSIM_EXAMPLE_ENGINE", "ray")
OUT = Path(os.environ.get("FEDSIM_EXAMPLE_OUT", "results/notebook_api"))
STRATEGIES = ("fedavg", "fedlion", "zsignfedavg")

# %% [markdown]
# One call per strategy. The shipped config gives the task and the strategy's settings; the
# keyword arguments override sections of it (`train={"rounds": ...}` changes only the rounds).

# %%
results = {
    name: fedsim.run(name, engine=ENGINE, train={"rounds": ROUNDS},
                     output={"dir": str(OUT), "plots": False})
    for name in STRATEGIES
}

# %% [markdown]
# Every `RunResult` holds the run's folder, its metrics round by round and its summary.

# %%
print(f"{'strategy':<12} {'final acc':>9} {'best acc':>8} {'uplink MB':>9} {'bits/param':>10}")
for name, result in results.items():
    s = result.summary
    print(f"{name:<12} {s['final_accuracy']:>9.3f} {s['best_accuracy']:>8.3f} "
          f"{s['total_uplink_bytes'] / 1e6:>9.3f} {s['mean_uplink_payload_bits_per_param']:>10.2f}")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for name, result in results.items():
    rows = result.metrics[1:]  # round 0 is the initial model, before any uplink
    ax.plot([r["cumulative_uplink_bytes"] / 1e6 for r in rows],
            [r["central_accuracy"] for r in rows], marker=".", label=name)
ax.set_xlabel("cumulative uplink (MB)")
ax.set_ylabel("central test accuracy")
ax.set_title(f"digits, {ROUNDS} rounds")
ax.legend()
fig.tight_layout()
plot = OUT / "accuracy_vs_uplink.png"
fig.savefig(plot, dpi=120)
print(f"plot: {plot}")

"""Vectorized clients' two ways of computing K gradients, side by side: ``vmap`` and grouped
kernels (``fedsim/tasks/stacked_layers.py``), and each client alone for reference.

    python benchmarks/stacked_kernels.py [--clients 50] [--steps 5] [--batch 16] [--passes 5]
                                         [--model digits-cnn] [--threads 1]

Each pass runs the three ways once, interleaved, each doing ``--steps`` SGD steps (lr 0.05)
for ``--clients`` clients of the model on random 8x8 digits-shaped batches; prints every pass,
the medians, the ratios and the largest difference of the final parameters between the ways.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedsim.tasks.models import MODELS, call_factory  # noqa: E402
from fedsim.tasks.stacked_layers import stacked_cross_entropy_gradient, stacked_forward  # noqa: E402

LR = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = call_factory(MODELS.get(args.model), (1, 8, 8), 10)
    forward = stacked_forward(model)
    if forward is None:
        print(f"{args.model} is not a chain of layers the grouped kernels cover; vmap only")
        return 2
    k, steps = args.clients, args.steps
    xs = torch.randn(steps, k, args.batch, 1, 8, 8)
    ys = torch.randint(0, 10, (steps, k, args.batch))
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = list(start)

    def stacked(step_fn) -> dict[str, torch.Tensor]:  # noqa: ANN001
        params = {n: t.unsqueeze(0).repeat(k, *([1] * t.dim())) for n, t in start.items()}
        for s in range(steps):
            grads, _ = step_fn(params, xs[s], ys[s])
            with torch.no_grad():
                for n in names:
                    params[n].sub_(LR * grads[n])
        return params

    with_vmap = vmap(grad_and_value(
        lambda p, x, y: F.cross_entropy(functional_call(model, p, (x,)), y)))
    grouped = stacked_cross_entropy_gradient(forward, names, {})

    def alone() -> dict[str, torch.Tensor]:
        finals = []
        for c in range(k):
            model.load_state_dict(start, strict=False)
            opt = torch.optim.SGD(model.parameters(), lr=LR)
            for s in range(steps):
                opt.zero_grad()
                F.cross_entropy(model(xs[s, c]), ys[s, c]).backward()
                opt.step()
            finals.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return {n: torch.stack([f[n] for f in finals]) for n in names}

    ways = {"each client alone": alone, "vmap": lambda: stacked(with_vmap),
            "grouped kernels": lambda: stacked(grouped)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    finals = {}
    print(f"{args.model}: {k} clients x {steps} steps of batch {args.batch}, "
          f"{args.threads} thread(s), {args.passes} interleaved passes")
    for index in range(args.passes):
        for name, way in ways.items():
            began = time.perf_counter()
            finals[name] = way()
            times[name].append(time.perf_counter() - began)
        print(f"pass {index + 1}: " + ", ".join(f"{n} {times[n][-1]:.3f} s" for n in ways))
    median = {name: statistics.median(t) for name, t in times.items()}
    print("median seconds: " + ", ".join(f"{n} {median[n]:.3f}" for n in ways))
    print(f"grouped / vmap = {median['grouped kernels'] / median['vmap']:.2f}; "
          f"vmap / alone = {median['vmap'] / median['each client alone']:.2f}; "
          f"grouped / alone = {median['grouped kernels'] / median['each client alone']:.2f}")
    reference = finals["each client alone"]
    for name in ("vmap", "grouped kernels"):
        diff = max(float((finals[name][n] - reference[n]).abs().max()) for n in names)
        print(f"largest difference of {name} from each client alone: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

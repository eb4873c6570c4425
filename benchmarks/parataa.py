"""ParaTAA vs sequential sampling on the tiny digits DDPM (arXiv 2402.09970).

Trains (or loads a cached) small DDPM, then for DDIM-100 (eta = 0) and DDPM-100 (eta = 1) prints
the parallel iterations, wall time and max |x_0 - sequential| of: sequential sampling, plain
fixed-point iteration FP (k = 1), the order-k iteration FP+ (k = N, no acceleration) and ParaTAA
(order-k + triangular Anderson acceleration), plus ParaTAA with the official defaults (k = 20,
m = 2). Iterations are the parallel-latency proxy; CPU wall time is not (a batched evaluation of
100 states is not free on a CPU).

    PYTHONPATH=. python benchmarks/parataa.py [--samples 16] [--ray 2] [--png out/grid.png]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from fedsim.diffusion.classifier import confident_share, train_classifier
from fedsim.diffusion.data import load_digit_images
from fedsim.diffusion.model import EpsMLP, EpsMLPConfig
from fedsim.diffusion.parataa import ParaTAAConfig, parataa_sample
from fedsim.diffusion.samplers import model_eps_fn, sample_noise, sequential_sample
from fedsim.diffusion.schedule import sampler_coeffs
from fedsim.diffusion.training import train_ddpm


def load_or_train(steps: int, hidden: int, depth: int, cache_dir: Path) -> EpsMLP:
    cfg = EpsMLPConfig(hidden=hidden, depth=depth)
    key = json.dumps({"model": cfg.__dict__, "steps": steps, "v": 1}, sort_keys=True)
    path = cache_dir / f"ddpm-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
    torch.manual_seed(0)
    model = EpsMLP(cfg)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        print(f"loaded cached DDPM {path}")
    else:
        t0 = time.perf_counter()
        losses = train_ddpm(model, load_digit_images()[0], steps=steps, seed=0)
        print(
            f"trained DDPM ({steps} steps) in {time.perf_counter() - t0:.1f} s, "
            f"final loss {sum(losses[-100:]) / 100:.4f}"
        )
        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="sampler steps N")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--train-steps", type=int, default=1500)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--history", type=int, default=3, help="TAA history m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ray", type=int, default=0, help="evaluate eps on this many Ray actors")
    ap.add_argument("--png", type=str, default="", help="write a grid of the ParaTAA samples")
    ap.add_argument(
        "--cache", type=str, default=os.path.join(os.path.expanduser("~"), ".cache", "fedsim")
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = load_or_train(args.train_steps, args.hidden, args.depth, Path(args.cache))
    eps_fn = model_eps_fn(model)
    pool = None
    if args.ray:
        import ray

        from fedsim.diffusion.ray_eps import RayEpsPool

        ray.init(num_cpus=args.ray, include_dashboard=False, log_to_driver=False)
        pool = RayEpsPool(model, num_workers=args.ray)
    par_fn = pool if pool is not None else eps_fn
    x, y = load_digit_images()
    clf = train_classifier(x, y, steps=300)
    n = args.steps
    try:
        for eta, label in ((0.0, f"DDIM-{n}"), (1.0, f"DDPM-{n}")):
            coeffs = sampler_coeffs(n, eta)
            z = sample_noise(args.samples, (1, 8, 8), n, torch.Generator().manual_seed(args.seed))
            with torch.no_grad():
                t0 = time.perf_counter()
                ref = sequential_sample(eps_fn, coeffs, z)
                t_seq = time.perf_counter() - t0
                ref64 = sequential_sample(eps_fn, coeffs, z.double())
            print(
                f"\n{label} (eta={eta:g}), {args.samples} samples, "
                f"confident share {confident_share(clf, ref):.2f}"
            )
            print(f"{'method':34s} {'iters':>5s} {'wall s':>7s} {'max|x0-seq|':>12s}")
            print(f"{'sequential':34s} {n:5d} {t_seq:7.3f} {0.0:12.1e}")
            runs = [
                ("FP (k=1)", ParaTAAConfig(order=1, history=1)),
                (f"FP+ order-k (k={n})", ParaTAAConfig(order=n, history=1)),
                (
                    f"ParaTAA (k={n}, m={args.history})",
                    ParaTAAConfig(order=n, history=args.history),
                ),
                ("ParaTAA official (k=20, m=2)", ParaTAAConfig(order=20, history=2)),
            ]
            for name, cfg in runs:
                t0 = time.perf_counter()
                res = parataa_sample(par_fn, coeffs, z, cfg)
                dt = time.perf_counter() - t0
                err = float((res.samples.double() - ref64).abs().max())
                print(f"{name:34s} {res.iterations:5d} {dt:7.3f} {err:12.1e}")
                if args.png and name.startswith("ParaTAA (") and eta == 0.0:
                    from fedsim.diffusion.images import save_grid

                    print(f"wrote {save_grid(res.samples, args.png)}")
    finally:
        if args.ray:
            import ray

            ray.shutdown()


if __name__ == "__main__":
    main()

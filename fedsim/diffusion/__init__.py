"""Diffusion workloads: a tiny DDPM, pure DDIM/DDPM sampler steps, ParaTAA parallel sampling
(Tang et al., ICML 2024, arXiv 2402.09970) and DNO noise optimisation (Tang et al., ICML 2025,
arXiv 2405.18881), with weight-free rewards on scikit-learn's 8x8 digits.

Phase 1: the pure parts only (no Flower task yet). Sequential sampling is the oracle that ParaTAA
and DNO are both built on and tested against.
"""

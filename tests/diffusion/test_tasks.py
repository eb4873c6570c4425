"""The diffusion and dno task kinds through the real ``fedsim run`` path (tiny settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord

from clients.setup import ClientSetup
from fedsim.config import load_config
from fedsim.config.errors import ConfigError
from fedsim.diffusion.ddpm_task import to_signed_unit
from fedsim.diffusion.dno import prob_reg, regularised_noise, reward_grad
from fedsim.diffusion.training import ddpm_loss
from fedsim.results.writer import read_metrics
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.kind import task_kind
from fedsim.tasks.task import client_split

from helpers import engine_independent, metrics_without_times, run_cli, summary

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DIFFUSION = str(CONFIGS / "diffusion-fedlion.toml")
TINY_DDPM = ("diffusion.hidden=32", "diffusion.depth=1", "diffusion.sample_steps=5",
             "diffusion.num_samples=8", "task.num_clients=4", "train.clients_per_round=4",
             "train.rounds=4", "train.local_steps=8", "eval.central_every=2",
             "eval.federated_every=4", "output.checkpoint_every=4")


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory, ddpm) -> Path:
    """The session's tiny trained DDPM (hidden 128, depth 2) as a frozen generator file."""
    path = tmp_path_factory.mktemp("generator") / "generator.pt"
    torch.save(ddpm.state_dict(), path)
    return path


DNO_LR = {"fedlion": "train.lr=0.01", "zsignfedavg": "train.lr=2.0"}


def tiny_dno(generator: Path, strategy: str) -> tuple[str, ...]:
    return (f"dno.generator={generator}", DNO_LR[strategy], "diffusion.hidden=128",
            "diffusion.depth=2", "dno.num_samples=2", "dno.sample_steps=5", "task.num_clients=3",
            "train.clients_per_round=3", "train.rounds=6", "eval.federated_every=3",
            "output.plots=false", "output.checkpoint_every=0")


def test_diffusion_run_learns_and_writes_sample_grids(tmp_path: Path) -> None:
    code, run_dir = run_cli(tmp_path / "ddpm", *TINY_DDPM, config=DIFFUSION)
    assert code == 0
    rows = read_metrics(run_dir)
    evaluated = [r["round"] for r in rows if "sample_quality" in r]
    assert evaluated == [0, 2, 4]
    assert rows[-1]["central_loss"] < 0.6 * rows[0]["central_loss"]  # the denoiser learns
    assert rows[4]["federated_loss"] < rows[0]["central_loss"]
    assert rows[1]["uplink_bytes"] > 0 and rows[1]["train_replies"] == 4
    for rnd in evaluated:
        assert (run_dir / "samples" / f"round_{rnd:04d}.png").stat().st_size > 0
    assert (run_dir / "sample_quality_vs_round.png").stat().st_size > 0
    final = summary(run_dir)["final_task_metrics"]
    assert 0.0 <= final["sample_quality"] <= 1.0 and 0.0 <= final["sample_class_coverage"] <= 1

    # the federated DDPM's results folder is a generator for federated DNO (docs/diffusion.md)
    code, dno_dir = run_cli(tmp_path / "dno", f"dno.generator={run_dir}", "diffusion.hidden=32",
                            "diffusion.depth=1", "dno.num_samples=2", "dno.sample_steps=5",
                            "task.num_clients=3", "train.clients_per_round=3", "train.rounds=2",
                            "output.plots=false", config=str(CONFIGS / "dno-fedlion.toml"))
    assert code == 0 and not (dno_dir / "generator.pt").exists()
    assert read_metrics(dno_dir)[-1]["train_loss"] > 0


def test_diffusion_client_loss_is_the_ddpm_loss_on_signed_images() -> None:
    cfg = load_config(Path(DIFFUSION), [f"{s}" for s in TINY_DDPM])
    kind = task_kind(ClientSetup.from_experiment(cfg))
    train, _ = client_split(cfg.task, cfg.seed, 0)
    model = kind.new_model()
    xb = torch.from_numpy(train.x[:16])
    loss = kind.batch_loss(train, 0)(model, xb, torch.zeros(16), torch.Generator().manual_seed(3))
    expected = ddpm_loss(model, 2 * xb - 1, torch.Generator().manual_seed(3))
    assert torch.equal(loss, expected)
    signed = to_signed_unit(train.x, "digits")
    assert signed.min() >= -1 and signed.max() <= 1


@pytest.mark.parametrize("strategy,bits", [("fedlion", 35.0), ("zsignfedavg", 1.0)])
def test_federated_dno_raises_private_rewards_keeps_z_typical(
        tmp_path: Path, generator_file: Path, strategy: str, bits: float) -> None:
    code, run_dir = run_cli(tmp_path / strategy, *tiny_dno(generator_file, strategy),
                            config=str(CONFIGS / f"dno-{strategy}.toml"))
    assert code == 0
    rows = read_metrics(run_dir)
    # train_loss = -mean private reward at the start of each client's local steps
    assert rows[-1]["train_loss"] < rows[1]["train_loss"] - 2.0
    assert rows[6]["federated_reward"] > rows[3]["federated_reward"]
    assert all(abs(r["noise_z_sq"] - 1) < 0.1 for r in rows)
    assert rows[1]["uplink_payload_bits_per_param"] == pytest.approx(bits, abs=0.01)
    assert (run_dir / "samples" / "round_0006.png").stat().st_size > 0


def test_dno_client_loss_has_reward_value_and_clipped_feedback_gradient(
        generator_file: Path) -> None:
    cfg = load_config(CONFIGS / "dno-fedlion.toml", list(tiny_dno(generator_file, "fedlion")))
    kind = task_kind(ClientSetup.from_experiment(cfg))
    model = kind.new_model()
    loss = kind.batch_loss(ArrayDataset(None, None), 0)(model, None, None, torch.Generator())
    loss.backward()
    grad, r, _ = reward_grad(model.z.detach(), kind.sampler(), kind.private_reward(0))
    assert float(loss.detach()) == pytest.approx(-float(r.mean()), rel=1e-5)
    expected = grad * min(1.0, cfg.dno.clip / float(grad.norm()))
    torch.testing.assert_close(model.z.grad, expected)


def test_server_step_on_prob_reg_pulls_atypical_noise_back(generator_file: Path) -> None:
    cfg = load_config(CONFIGS / "dno-fedlion.toml", list(tiny_dno(generator_file, "fedlion")))
    kind = task_kind(cfg)
    torch.manual_seed(0)
    z = 1.3 * torch.randn(kind.z_shape)
    before = ArrayRecord({"z": z.contiguous()})
    after = before
    for rnd in range(1, 6):
        after = kind.server_update(after, rnd)
    z_after = torch.from_numpy(after["z"].numpy())
    gen = torch.Generator().manual_seed(0)
    p_before = prob_reg(regularised_noise(z, kind.coeffs), generator=gen).mean()
    p_after = prob_reg(regularised_noise(z_after, kind.coeffs), generator=gen).mean()
    assert p_after < p_before
    assert z_after.pow(2).mean() < z.pow(2).mean()


@pytest.mark.parametrize("override,field", [
    (("task.kind=diffusion", "task.model=logreg"), "task.model"),
    (("task.model=eps-mlp",), "task.model"),
    (("task.kind=dno", "task.model=eps-mlp", "dno.reward=compressibility"), "dno.method"),
    (("task.kind=dno", "task.model=eps-mlp", "task.dataset=mnist", "task.partitioner=iid"),
     "dno.generator"),
])
def test_task_kind_config_errors_name_the_field(override: tuple[str, ...], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "quickstart.toml", list(override))
    assert err.value.field == field


@pytest.mark.slow
def test_federated_dno_on_the_ray_engine_matches_in_process(tmp_path: Path,
                                                            generator_file: Path) -> None:
    overrides = tiny_dno(generator_file, "zsignfedavg")
    config = str(CONFIGS / "dno-zsignfedavg.toml")
    _, local = run_cli(tmp_path / "inprocess", *overrides, config=config)
    code, ray = run_cli(tmp_path / "ray", *overrides, "engine.num_cpus=2", engine="ray",
                        config=config)
    assert code == 0
    ray_rows, local_rows = (engine_independent(metrics_without_times(d)) for d in (ray, local))
    common = [{k: v for k, v in r.items() if k in other}
              for r, other in zip(ray_rows, local_rows, strict=True)]
    assert common == local_rows


def test_dno_without_generator_pretrains_one_and_hands_clients_its_path(tmp_path: Path) -> None:
    code, run_dir = run_cli(tmp_path / "pre", "dno.pretrain_steps=30", "diffusion.hidden=32",
                            "diffusion.depth=1", "dno.num_samples=2", "dno.sample_steps=4",
                            "task.num_clients=2", "train.clients_per_round=2", "train.rounds=1",
                            "output.plots=false", config=str(CONFIGS / "dno-fedlion.toml"))
    assert code == 0
    assert (run_dir / "generator.pt").stat().st_size > 0
    assert read_metrics(run_dir)[1]["train_replies"] == 2


def test_black_box_dno_uplinks_only_reward_values_and_improves(tmp_path: Path,
                                                                generator_file: Path) -> None:
    overrides = [o for o in tiny_dno(generator_file, "zsignfedavg")
                 if not o.startswith("train.lr")]
    code, run_dir = run_cli(tmp_path / "zo", *overrides, "strategy.q=8",
                            "strategy.server_lr=1.0", "train.rounds=8",
                            config=str(CONFIGS / "dno-zo-seeds.toml"))
    assert code == 0
    rows = read_metrics(run_dir)
    assert rows[-1]["train_loss"] < rows[1]["train_loss"] - 0.3
    # 9 float32 reward values per client, whatever the size of z (2 x 6 x 64 = 768)
    assert rows[1]["uplink_payload_bytes"] == 3 * 9 * 4
    assert all(abs(r["noise_z_sq"] - 1) < 0.1 for r in rows if "noise_z_sq" in r)


def test_hub_images_are_unnormalised_to_the_signed_unit_range() -> None:
    import numpy as np

    from fedsim.tasks.hub import HUB_DATASETS

    info = HUB_DATASETS["mnist"]
    pixels = np.array([0.0, 0.5, 1.0], np.float32).reshape(1, 1, 1, 3)
    normalised = (pixels - info.mean[0]) / info.std[0]
    torch.testing.assert_close(to_signed_unit(normalised, "mnist").flatten(),
                               torch.tensor([-1.0, 0.0, 1.0]))

"""Finding 10: a client refuses server settings outside its bounds, and the node's dataset is
checked; ``fedsim deploy`` explains flwr's boxed errors and lowers clients_per_round for a
``--set task.num_clients=N``."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from clients.client_app import app
from clients.setup import CLIENT_BOUNDS, SETUP_KEY, ClientSetup
from fedsim.config import ConfigError, load_config
from fedsim.deploy import commands
from fedsim.deploy.flwr_cli import _message_text
from fedsim.engine.base import assign_message_id, set_server_identity
from fedsim.tasks.kind import task_kind

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"


def _reply(sets: list[str], node_config: dict | None = None) -> Message:
    cfg = load_config(QUICKSTART, sets)
    set_server_identity(7)
    content = RecordDict({"arrays": task_kind(cfg).initial_arrays(), "config": ConfigRecord(
        {SETUP_KEY: ClientSetup.from_experiment(cfg).to_json(), "server-round": 1})})
    msg = Message(content, dst_node_id=5, message_type="train")
    assign_message_id(msg)
    ctx = Context(run_id=7, node_id=5, state=RecordDict(), run_config={},
                  node_config={"partition-id": 0, "num-partitions": 10, **(node_config or {})})
    return app(msg, ctx)


@pytest.mark.parametrize(("sets", "match"), [
    (["train.local_steps=1000000"], r"train.local_steps = 1000000: it allows at most 10000 "
                                    r"\(node config max-local-steps"),
    (["train.local_steps=0", "train.local_epochs=5000"], "train.local_epochs = 5000"),
    (["train.batch_size=100000"], "train.batch_size = 100000.*max-batch-size"),
    (["strategy.name=zsignfedavg", "strategy.sigma=1e9"], "strategy.sigma = 1000000000.0.*"
                                                          "at most 10000"),
])
def test_client_refuses_settings_beyond_default_bounds(sets: list[str], match: str) -> None:
    with pytest.raises(ValueError, match="this node refuses " + match):
        _reply(sets)


def test_node_config_sets_the_bounds() -> None:
    with pytest.raises(ValueError, match="train.local_steps = 3: it allows at most 2"):
        _reply(["train.local_steps=3"], {"max-local-steps": 2})
    assert not _reply(["train.local_steps=2"], {"max-local-steps": 2}).has_error()
    # a node that insists on privacy noise refuses a server that switches it off
    with pytest.raises(ValueError, match=r"strategy.sigma = 0.0: it allows at least 0.5"):
        _reply(["strategy.name=zsignfedavg", "strategy.sigma=0"], {"min-noise-sigma": 0.5})
    assert not _reply(["strategy.name=zsignfedavg", "strategy.sigma=1"],
                      {"min-noise-sigma": 0.5}).has_error()


def test_node_dataset_must_match_the_experiment() -> None:
    with pytest.raises(ValueError, match="started with --dataset mnist but the experiment has "
                                         "task.dataset = 'digits'"):
        _reply([], {"dataset": "mnist"})


def test_bound_flags_and_unknown_dataset_on_the_cli(capsys: pytest.CaptureFixture) -> None:
    assert {b.key for b in CLIENT_BOUNDS} >= {"max-local-steps", "max-batch-size"}
    code = commands.main(["deploy", "supernode", "--superlink", "127.0.0.1:1", "--insecure",
                          "--partition-id", "0", "--num-partitions", "2",
                          "--dataset", "imagenet"])
    err = capsys.readouterr().err
    assert code == 3
    assert "--dataset 'imagenet' is not a dataset fedsim knows" in err and "digits" in err
    args = commands._node_config(_parse(["--max-local-steps", "50", "--dataset", "digits"]))
    assert args["max-local-steps"] == 50 and args["client-noise"] == "secret"
    assert "max-batch-size" not in args


def _parse(extra: list[str]):  # noqa: ANN202
    import argparse

    parser = argparse.ArgumentParser()
    commands.add_deploy_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["deploy", "supernode", "--superlink", "h:1", "--partition-id",
                              "0", "--num-partitions", "2", *extra])


def test_boxed_flwr_error_keeps_its_words() -> None:
    boxed = ("\x1b[31m╭─ Error ──────────────╮\x1b[0m\n"
             "│ File not found: keys/site-a.pub │\n"
             "╰──────────────────────╯\n")
    assert _message_text(boxed) == "Error File not found: keys/site-a.pub"


def test_num_clients_lowers_clients_per_round_with_a_notice(
        capsys: pytest.CaptureFixture) -> None:
    cfg = commands._load_run_config(str(QUICKSTART), ["task.num_clients=2"])
    assert cfg.task.num_clients == 2 and cfg.train.clients_per_round == 2
    assert "using train.clients_per_round = 2" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="train.clients_per_round = 5"):
        commands._load_run_config(str(QUICKSTART), ["task.num_clients=2",
                                                    "train.clients_per_round=5"])

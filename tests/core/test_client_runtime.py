"""The ClientApp's global-model loading: same result as ``load_state_dict``, decoded once per
shared record, never stale, and torch's own errors for a model that does not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from clients.runtime import global_tensors, load_global_model


def _record(seed: int, out: int = 3) -> ArrayRecord:
    torch.manual_seed(seed)
    return ArrayRecord(torch.nn.Linear(4, out).state_dict())


def test_loads_what_load_state_dict_loads_and_decodes_a_shared_record_once() -> None:
    model, reference = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    first = _record(1)
    load_global_model(model, first)
    reference.load_state_dict(first.to_torch_state_dict())
    for ours, theirs in zip(model.state_dict().values(), reference.state_dict().values(),
                            strict=True):
        assert torch.equal(ours, theirs)
    assert global_tensors(first) is global_tensors(first)  # the batch's shared record
    with torch.no_grad():
        model.weight.add_(1.0)  # local training must not leak into the cached global model
    load_global_model(model, first)
    assert torch.equal(model.weight, reference.weight)


def test_a_new_record_is_decoded_again() -> None:
    model = torch.nn.Linear(4, 3)
    load_global_model(model, _record(1))
    second = _record(2)
    load_global_model(model, second)
    np.testing.assert_array_equal(model.weight.detach().numpy(), second["weight"].numpy())


def test_a_model_that_does_not_fit_gets_torchs_error() -> None:
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_global_model(torch.nn.Linear(4, 3), _record(1, out=5))


def test_models_taking_turns_each_get_the_global_model() -> None:
    """The copy plan cached for one (model, record) pair is never used on another model."""
    record, first, second = _record(3), torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    for model in (first, second, first):
        with torch.no_grad():
            model.weight.zero_()
        load_global_model(model, record)
        np.testing.assert_array_equal(model.weight.detach().numpy(), record["weight"].numpy())

"""The registry matrix: every registered model gets the same checks, so new models are tested for free."""

from __future__ import annotations

import pytest
import torch

from benchmark.evaluation.tlc import to_local
from models import create_model, list_models, register_model
from models.identity import Identity

MODELS = list_models()


def _param(name: str):
    """Full-size models run the same checks, marked slow (seconds to a minute each on 2 CPU cores)."""
    cheap = name == "identity" or name.endswith("_tiny")
    return pytest.param(name, id=name, marks=() if cheap else pytest.mark.slow)


@pytest.fixture(scope="module", params=[_param(n) for n in MODELS])
def model(request: pytest.FixtureRequest):
    torch.manual_seed(0)
    return create_model(request.param)


def test_registry_key_names_the_instance() -> None:
    assert "identity" in MODELS and "mimo_unet" in MODELS and "mimo_unet_tiny" in MODELS
    for name in MODELS:
        assert create_model(name).registry_name == name


def test_registry_refuses_a_second_factory_under_a_taken_name() -> None:
    def identity() -> Identity:  # the name of an existing factory
        return Identity()

    with pytest.raises(
        ValueError, match=r"model 'identity' is registered twice \(models\.identity and [\w.]*test_registry\)"
    ):
        register_model(identity)
    assert list_models() == MODELS  # nothing was added or replaced
    assert type(create_model("identity")).__module__ == "models.identity"


@pytest.mark.parametrize("name", ["Identity2", "mimo-unet", "2net", "naf net"])
def test_registry_refuses_names_that_are_not_lowercase_identifiers(name: str) -> None:
    def factory() -> Identity:
        return Identity()

    factory.__name__ = name
    with pytest.raises(ValueError, match=r"must be a lowercase snake_case identifier"):
        register_model(factory)
    assert name not in list_models()


def test_unknown_model_and_override_are_errors() -> None:
    with pytest.raises(KeyError, match=r"unknown model 'nope'.*identity"):
        create_model("nope")
    with pytest.raises(TypeError, match="bad override"):
        create_model("mimo_unet_tiny", not_a_field=3)


@pytest.mark.parametrize("size", [(32, 32), (23, 37)])
def test_forward_keeps_shape_any_size(model, size: tuple[int, int]) -> None:
    model.eval()
    lq = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = model(lq)
    assert out.shape == lq.shape
    assert torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient(model) -> None:
    model.train()
    torch.manual_seed(1)
    # A small crop every architecture takes: at least 16 px and two of its pad_multiple (HINet's instance norms need a
    # deepest level of 2x2 or more in training).
    side = max(-(-16 // model.pad_multiple), 2) * model.pad_multiple
    lq, gt = torch.rand(2, 3, side, side), torch.rand(2, 3, side, side)
    out = model.forward_train(lq, gt)
    assert out.restored.shape == lq.shape
    terms = model.loss(out, gt)
    assert "total" in terms and torch.isfinite(terms["total"])
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        assert model.registry_name == "identity"
        return
    model.zero_grad(set_to_none=True)
    terms["total"].backward()
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"{model.registry_name}: no gradient for {missing[:10]}"
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not bad, f"{model.registry_name}: non-finite gradient for {bad[:10]}"


def test_training_crop_must_fit_pad_multiple(model) -> None:
    if model.pad_multiple == 1:
        pytest.skip("any crop size works")
    bad = torch.rand(1, 3, model.pad_multiple * 4 + 1, model.pad_multiple * 4)
    with pytest.raises(ValueError, match="not a multiple"):
        model.forward_train(bad, bad)


def test_to_local_converts_a_working_copy(model) -> None:
    model.eval()
    local = to_local(model, (32, 32))
    assert local is not model
    assert local.state_dict().keys() == model.state_dict().keys()
    lq = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert local(lq).shape == lq.shape


def test_to_local_leaves_the_training_size_unchanged(model) -> None:
    """At the training size every TLC window covers its whole map (1.5x the feature size), so the converted model is
    the trained one: global means, whole-image attention."""
    model.eval()
    side = max(32, 2 * model.pad_multiple)
    local = to_local(model, (side, side))
    lq = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(local(lq), model(lq), rtol=0, atol=1e-5)

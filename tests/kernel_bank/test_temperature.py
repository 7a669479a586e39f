"""The temperature of DY-Conv / ODConv is one float buffer: every copy of the state (EMAs, DDP's buffer broadcast,
functional_call, checkpoints) computes with the temperature it carries."""

import copy

import pytest
import torch
import torch.nn as nn

from freqdyn import DynamicConv2d, ODConv2d, set_temperature
from helpers import perturb_

KEY = "attention.temperature"


def annealable() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        DynamicConv2d(8, 8, 3, padding=1, temperature=30.0),
        ODConv2d(8, 8, 3, padding=1, temperature=30.0, attention_norm="layer"),
    )
    return perturb_(model, scale=1.0).eval()


def carried_function(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Output of layers built at the temperatures ``model``'s state_dict says, loaded with its weights."""
    layers = []
    for layer in model:
        state = layer.state_dict()
        temperature = float(state[KEY])
        fresh = type(layer)(
            8,
            8,
            3,
            padding=1,
            temperature=temperature,
            **({"attention_norm": "layer"} if isinstance(layer, ODConv2d) else {}),
        )
        fresh.load_state_dict({k: v for k, v in state.items() if k != KEY}, strict=False)
        assert fresh.temperature == temperature
        layers.append(fresh)
    return nn.Sequential(*layers).eval()(x)


def test_timm_ema_copy_of_an_annealed_model_runs_at_its_temperature():
    timm_ema = pytest.importorskip("timm.utils.model_ema")
    model = annealable()
    ema = timm_ema.ModelEmaV3(model, decay=0.0)
    set_temperature(model, 1.0)
    ema.update(model)
    x = torch.randn(2, 8, 7, 7)
    assert ema.module[0].temperature == 1.0
    assert torch.equal(ema.module(x), model(x))
    torch.testing.assert_close(ema.module(x), carried_function(ema.module, x))


def test_ultralytics_ema_anneals_with_the_model():
    torch_utils = pytest.importorskip("ultralytics.utils.torch_utils")
    model = annealable()
    ema = torch_utils.ModelEMA(model, updates=10_000)  # late in training: the decay is about 0.9999
    set_temperature(model, 1.0)
    for _ in range(3):
        ema.update(model)
    carried = float(ema.ema.state_dict()["0." + KEY])
    assert 1.0 < carried < 30.0  # lerped towards the model's temperature, as every float state
    x = torch.randn(2, 8, 7, 7)
    torch.testing.assert_close(ema.ema(x), carried_function(ema.ema, x))


def test_in_place_buffer_copy_and_functional_call_set_the_temperature():
    model = annealable()
    other = copy.deepcopy(model)
    set_temperature(model, 1.0)
    x = torch.randn(2, 8, 7, 7)
    for a, b in zip(other, model, strict=True):  # what DDP's broadcast_buffers does
        a.attention.temperature.copy_(b.attention.temperature)
    assert torch.equal(other(x), model(x))
    state = dict(other.named_parameters()) | dict(other.named_buffers())
    state |= {"0." + KEY: torch.tensor(3.0), "1." + KEY: torch.tensor(3.0)}
    called = torch.func.functional_call(other, state, (x,))
    set_temperature(other, 3.0)
    torch.testing.assert_close(called, other(x), rtol=0, atol=0)
    torch.testing.assert_close(called, carried_function(other, x))

import torch

from freqdyn import StarReLU


def test_star_relu_formula_and_gradcheck():
    act = StarReLU(scale_value=0.8944, bias_value=-0.4472).double()
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    expected = 0.8944 * torch.clamp(x, min=0) ** 2 - 0.4472
    torch.testing.assert_close(act(x), expected)
    assert torch.autograd.gradcheck(act, (x,))

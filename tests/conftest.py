import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", default="cpu", help="device of the tests that take the `device` fixture, e.g. cuda (default: cpu)"
    )


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """``--device`` (default cpu): the core equivalence tests also run on an accelerator, without TF32."""
    chosen = torch.device(request.config.getoption("--device"))
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("--device cuda: no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return chosen

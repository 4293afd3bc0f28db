"""An eager QAT model (``prepare_qat`` with the x86 QAT qconfig), its fake quantizers running and
their observers warmed up on a few batches: its output is already fake-quantized."""

import torch
import torch.ao.quantization as tq
from torch import nn

DESCRIPTION = "QAT-prepared MLP, fake quantizers on"


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.fc1 = nn.Linear(16, 32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 4)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    model = Mlp().train()
    model.qconfig = tq.get_default_qat_qconfig("x86")
    tq.prepare_qat(model, inplace=True)
    g = torch.Generator().manual_seed(2)
    for _ in range(4):
        model(torch.randn(8, 16, generator=g))
    return model.eval()


def calibration_batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 16, generator=g) for _ in range(4)]

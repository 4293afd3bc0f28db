import torch
import transformers

DESCRIPTION = "ConvNeXt, two stages (transformers, random init)"


def build_model():
    torch.manual_seed(0)
    c = transformers.ConvNextConfig(
        num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32, num_labels=5
    )
    return transformers.ConvNextForImageClassification(c).eval()


def calibration_batches():
    g = torch.Generator().manual_seed(1)
    return [{"pixel_values": torch.randn(2, 3, 32, 32, generator=g)} for _ in range(4)]

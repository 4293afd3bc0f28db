import torch
import transformers

DESCRIPTION = "CLIP, text and vision towers (transformers, random init): several outputs"


def build_model():
    torch.manual_seed(0)
    text = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "max_position_embeddings": 16,
        "projection_dim": 16,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "image_size": 16,
        "patch_size": 8,
        "projection_dim": 16,
    }
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    return transformers.CLIPModel(config).eval()


def calibration_batches():
    g = torch.Generator().manual_seed(1)
    return [
        {"input_ids": torch.randint(0, 64, (2, 8), generator=g), "pixel_values": torch.randn(2, 3, 16, 16, generator=g)}
        for _ in range(4)
    ]

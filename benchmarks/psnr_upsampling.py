"""Real-image check of FreqFusion: a tiny 2x upsampling head trained for a fixed CPU budget, PSNR on held-out photos.

    python benchmarks/psnr_upsampling.py [--steps 300] [--quick]

Photos come from ``skimage.data`` (scikit-image; ``pip install scikit-image``). The low-resolution input is
the 2x2 average of the photo. Every model has the same encoders and head; only the way the low-resolution
features reach the high resolution differs:

    lr features  = conv3x3 -> GELU -> conv3x3 (on the lr image)
    hr features  = conv3x3 (on the bilinearly upsampled lr image)
    fused        = hr + nearest(lr) | hr + bilinear(lr) | hr_out + lr_out of FreqFusion(hr, lr)
    prediction   = bilinear(lr image) + conv3x3(GELU(fused))

Each model trains for the same number of Adam steps on random 64x64 crops of the training photos (same
seed, same crops) and is evaluated (PSNR over the full held-out photos, RGB in [0, 1]).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from freqdyn import FreqFusion
from freqdyn.tools.timing import machine_line

TRAIN = ("coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel")
TEST = ("astronaut", "chelsea", "retina")


def load(name: str) -> torch.Tensor:
    from skimage import data

    image = getattr(data, name)()[..., :3].astype(np.float32) / 255.0
    image = torch.from_numpy(image).permute(2, 0, 1)[None]
    if max(image.shape[-2:]) > 600:
        image = F.interpolate(image, scale_factor=0.5, mode="area")
    h, w = image.shape[-2] // 2 * 2, image.shape[-1] // 2 * 2
    return image[..., :h, :w]


class Upsampler(nn.Module):
    def __init__(self, fusion: str, channels: int = 32) -> None:
        super().__init__()
        self.fusion = fusion
        self.lr_encoder = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1)
        )
        self.hr_encoder = nn.Conv2d(3, channels, 3, padding=1)
        self.head = nn.Sequential(nn.GELU(), nn.Conv2d(channels, 3, 3, padding=1))
        self.freq_fusion = (
            FreqFusion(channels, channels, compressed_channels=channels, feature_resample=True)
            if fusion == "freqfusion"
            else None
        )

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(low, scale_factor=2.0, mode="bilinear", align_corners=False)
        lr, hr = self.lr_encoder(low), self.hr_encoder(base)
        if self.freq_fusion is not None:
            hr_out, lr_out = self.freq_fusion(hr, lr)
            fused = hr_out + lr_out
        else:
            align = None if self.fusion == "nearest" else False
            fused = hr + F.interpolate(lr, scale_factor=2.0, mode=self.fusion, align_corners=align)
        return base + self.head(fused)


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    mse = F.mse_loss(prediction.clamp(0, 1), target).item()
    return 10 * np.log10(1.0 / mse)


def crops(images: list[torch.Tensor], batch: int, size: int, gen: torch.Generator) -> torch.Tensor:
    out = []
    for _ in range(batch):
        image = images[int(torch.randint(len(images), (1,), generator=gen))]
        y = int(torch.randint(0, image.shape[-2] - size + 1, (1,), generator=gen)) // 2 * 2
        x = int(torch.randint(0, image.shape[-1] - size + 1, (1,), generator=gen)) // 2 * 2
        out.append(image[..., y : y + size, x : x + size])
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="3 steps of batch 2: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch = 3, 2
    train, test = [load(n) for n in TRAIN], [load(n) for n in TEST]
    print(
        f"{machine_line()}, "
        f"{args.steps} Adam steps, batch {args.batch} x 64^2 crops; train {', '.join(TRAIN)}; test {', '.join(TEST)}"
    )
    print(
        "| upsampling of the lr features | params | train s | "
        + " | ".join(f"PSNR {n}" for n in TEST)
        + " | mean PSNR |"
    )
    print("|---|---|---|" + "---|" * (len(TEST) + 1))
    bicubic = [
        psnr(F.interpolate(F.avg_pool2d(t, 2), scale_factor=2.0, mode="bicubic", align_corners=False), t) for t in test
    ]
    print(
        "| bicubic image, no model | 0 | 0 | "
        + " | ".join(f"{p:.2f}" for p in bicubic)
        + f" | {np.mean(bicubic):.2f} |"
    )
    for fusion in ("nearest", "bilinear", "freqfusion"):
        torch.manual_seed(0)
        model = Upsampler(fusion)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(args.steps):
            target = crops(train, args.batch, 64, gen)
            loss = F.l1_loss(model(F.avg_pool2d(target, 2)), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            scores = [psnr(model(F.avg_pool2d(t, 2)), t) for t in test]
        params = sum(p.numel() for p in model.parameters())
        print(
            f"| {fusion} | {params:,} | {seconds:.0f} | "
            + " | ".join(f"{p:.2f}" for p in scores)
            + f" | {np.mean(scores):.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

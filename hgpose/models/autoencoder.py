"""The thesis' latent autoencoder (chapter "Improving the model").

It squeezes the hourglass bottleneck (256x4x4 = 4,096 values) through a 50-dim code.
50 because the principal components of the latent past ~50 looked like noise.

The same module is used two ways:
- standalone, pre-trained on saved 256x4x4 latents (`encode`, `decode`, `forward`);
- inside `ThesisNetwork(autoencoder=True)` as `hourglass.autoencoder`, so a pre-trained
  state dict loads with `model.hourglass.autoencoder.load_state_dict(ae.state_dict())`.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import xavier_init


class LatentAutoencoder(nn.Module):
    """conv3x3 256->192->128->64, Linear->code; mirrored by Linear and transposed convs.

    Widths scale with `channels` (3/4, 1/2, 1/4 of it), so a reduced-width network gets a
    matching AE. Every conv/linear is followed by a ReLU, the last decoder layer included,
    as the thesis states. The code is the output of the `code` module (an identity that
    exists so the code can be captured by name: `hourglass.autoencoder.code`).
    """

    def __init__(self, channels: int = 256, code: int = 50, spatial: int = 4):
        super().__init__()
        widths = [channels, channels * 3 // 4, channels // 2, channels // 4]
        self.channels = channels
        self.spatial = spatial
        flat = widths[-1] * spatial * spatial  # 64 * 4 * 4 = 1,024 at full width

        encoder: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            encoder += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
        encoder += [nn.Flatten(), nn.Linear(flat, code), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder)
        self.code = nn.Identity()

        decoder: list[nn.Module] = [
            nn.Linear(code, flat),
            nn.ReLU(),
            nn.Unflatten(1, (widths[-1], spatial, spatial)),
        ]
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]):
            decoder += [nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=1, padding=1), nn.ReLU()]
        self.decoder = nn.Sequential(*decoder)

        xavier_init(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, channels, spatial, spatial] -> [B, code]"""
        if x.shape[-3:] != (self.channels, self.spatial, self.spatial):
            raise ValueError(
                f"autoencoder expects latents of {self.channels}x{self.spatial}x{self.spatial}, "
                f"got {x.shape[-3]}x{x.shape[-2]}x{x.shape[-1]} (the network input must be 256x256 for a 4x4 bottleneck)"
            )
        return self.code(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """[B, code] -> [B, channels, spatial, spatial]"""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

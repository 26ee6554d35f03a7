"""The flow autoencoder of the built-in shot model: motion as coarse optical flow.

A latent flow diffusion model (LFDM, Ni et al., CVPR 2023, "Conditional Image-to-Video
Generation with Latent Flow Diffusion Models"): frame t of a shot is its keyframe moved by a
coarse flow field, blended by a visibility map with what a small decoder fills in where the
keyframe shows nothing (the background a walking character uncovers). Moving the keyframe's
pixels keeps every character's look by construction; the diffusion model
(`renderer.shots.motion_transformer`) only has to model where things go, in a latent of
3 x 16 x 16 numbers per frame.

`FlowAutoencoder`: (keyframe, frame) -> motion latent (B, 3, g, g) -> frame. Channels 0-1 are
the backward flow (x, y) in units of `flow_scale` pixels at `resolution` (output pixel p shows
keyframe pixel p + flow(p)); channel 2 the visibility in [-1, 1] (its logit over
`visibility_bound`). Trained without labels, by reconstruction. With `sampling="nearest"` each
output pixel is one keyframe pixel at inference, not a bilinear blend of four: at 64 x 64 a
blend wipes out the stripes and spots (a pixel or two wide) that tell characters apart.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

MOTION_CHANNELS = 3  # flow x, flow y, visibility
SAMPLINGS = ("bilinear", "nearest")


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(min(8, c_out // 4), c_out), nn.SiLU()
    )


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def levels(high: int, low: int, what: str) -> int:
    """How many halvings take `high` to `low` (both powers of two)."""
    n = int(round(math.log2(high / low))) if low > 0 and high >= low else -1
    if n < 0 or low << n != high:
        raise ValueError(f"{what}: {high} is not {low} times a power of two")
    return n


class FlowAutoencoder(ModelMixin, ConfigMixin):
    """(keyframe, frame) -> motion latent (flow + visibility) -> frame.

    Images are (B, 3, r, r) in [-1, 1]. The encoder is a small U-Net from the pair to the
    latent grid (through a bottleneck 4x coarser, for displacements wider than its kernels);
    the decoder a small U-Net from [warped keyframe, visibility, keyframe] to the fill.
    """

    @register_to_config
    def __init__(
        self,
        resolution: int = 64,
        latent_size: int = 16,
        width: int = 16,
        flow_scale: float = 8.0,
        visibility_bound: float = 4.0,
        sampling: str = "bilinear",
    ) -> None:
        super().__init__()
        w = width
        n = levels(resolution, latent_size, "resolution / latent_size")
        if latent_size < 4:
            raise ValueError(f"latent_size must be at least 4, got {latent_size}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        # encoder: r -> g (n halvings, widening to 4w), g -> g/4 and back with skips
        chans = [min(w << k, 4 * w) for k in range(n + 1)]
        self.encoder_in = conv_block(6, chans[0])
        self.encoder_down = nn.ModuleList(conv_block(chans[k], chans[k + 1], 2) for k in range(n))
        c = chans[-1]
        self.bottleneck_down = nn.ModuleList([conv_block(c, c, 2), conv_block(c, c, 2)])
        self.bottleneck_up = nn.ModuleList([conv_block(2 * c, c), conv_block(2 * c, c)])
        self.encoder_out = nn.Conv2d(c, MOTION_CHANNELS, 3, 1, 1)
        # start as "nothing moves, everything visible": zero flow, visibility logit ~ +3.6
        nn.init.zeros_(self.encoder_out.weight)
        nn.init.zeros_(self.encoder_out.bias)
        nn.init.constant_(self.encoder_out.bias[2:], 1.5)
        # decoder: three scales r, r/2, r/4
        self.decoder_in = conv_block(7, w)
        self.decoder_down = nn.ModuleList([conv_block(w, 2 * w, 2), conv_block(2 * w, 4 * w, 2)])
        self.decoder_mid = conv_block(4 * w, 4 * w)
        self.decoder_up = nn.ModuleList([conv_block(6 * w, 2 * w), conv_block(3 * w, w)])
        self.decoder_out = nn.Conv2d(w, 3, 3, 1, 1)

    def encode(self, keyframe: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """(B, 3, r, r) x 2 -> motion latent (B, 3, g, g): frame = keyframe moved by it."""
        x = self.encoder_in(torch.cat([keyframe, frame], 1))
        for down in self.encoder_down:
            x = down(x)
        skips = [x]
        for down in self.bottleneck_down:
            x = down(x)
            skips.append(x)
        skips.pop()
        for up in self.bottleneck_up:
            x = up(torch.cat([upsample(x), skips.pop()], 1))
        raw = self.encoder_out(x)  # (B, 3, g, g)
        return torch.cat([raw[:, :2], torch.tanh(raw[:, 2:])], 1)

    def warp(
        self, image: torch.Tensor, latent: torch.Tensor, flow: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The image moved by the latent's flow, and the visibility, both at the image's size.

        Args:
            image: (B, C, H, W), any size: the flow is in pixels at `resolution`, scaled.
            latent: (B, 3, g, g) motion latent.
            flow: (B, 2, H, W) backward flow in pixels at the image's size, to move the image
                by instead of the latent's (whose visibility is still the one returned).

        Returns:
            warped (B, C, H, W) and visibility (B, 1, H, W) in (0, 1).
        """
        b, _, h, w = image.shape
        up = F.interpolate(
            latent.to(image.dtype), size=(h, w), mode="bilinear", align_corners=False
        )
        if flow is None:
            flow = self.flow_pixels(up)
        # pixels -> grid_sample's units (the frame spans [-1, 1])
        flow = flow.permute(0, 2, 3, 1) * flow.new_tensor([2 / w, 2 / h])
        ys = (torch.arange(h, device=image.device, dtype=image.dtype) * 2 + 1) / h - 1
        xs = (torch.arange(w, device=image.device, dtype=image.dtype) * 2 + 1) / w - 1
        base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (H, W, 2) as (x, y)
        grid = base[None] + flow  # (B, H, W, 2)
        # "nearest": each pixel one keyframe pixel rather than a blend of four, which blurs
        # stripes and spots a pixel wide; training (with gradients) samples bilinearly, as
        # nearest has no gradient with respect to the flow
        nearest = self.config.sampling == "nearest" and not torch.is_grad_enabled()
        warped = F.grid_sample(
            image,
            grid,
            mode="nearest" if nearest else "bilinear",
            padding_mode="border",
            align_corners=False,
        )
        visibility = torch.sigmoid(self.config.visibility_bound * up[:, 2:])
        return warped, visibility

    def flow_pixels(self, up: torch.Tensor) -> torch.Tensor:
        """A latent upsampled to (B, 3, H, W) -> its backward flow (B, 2, H, W) in pixels at
        that size (the latent's is in units of `flow_scale` pixels at `resolution`)."""
        h, w = up.shape[-2:]
        scale = up.new_tensor([w, h]).view(1, 2, 1, 1) * (
            self.config.flow_scale / self.config.resolution
        )
        return up[:, :2] * scale

    def flow_at(self, latent: torch.Tensor, size: int) -> torch.Tensor:
        """The latent's backward flow (B, 2, size, size) in pixels at `size`: the very field
        `warp` moves an image of that size by (plus each pixel's own (x, y): where it comes
        from)."""
        up = F.interpolate(latent, size=(size, size), mode="bilinear", align_corners=False)
        return self.flow_pixels(up)

    def decode(self, keyframe: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """(B, 3, r, r) keyframe + (B, 3, g, g) latent -> the frame (B, 3, r, r), unclamped."""
        return self.decode_parts(keyframe, latent)[0]

    def decode_parts(
        self, keyframe: torch.Tensor, latent: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`decode`, with the moved keyframe and the visibility (B, 1, r, r) it was blended by."""
        warped, visible = self.warp(keyframe, latent)
        return self.blend(keyframe, warped, visible), warped, visible

    def blend(
        self, keyframe: torch.Tensor, warped: torch.Tensor, visible: torch.Tensor
    ) -> torch.Tensor:
        """The frame: the moved keyframe (B, 3, r, r) where visible (B, 1, r, r), elsewhere
        what the decoder fills in from [moved keyframe, visibility, keyframe]."""
        x0 = self.decoder_in(torch.cat([warped, visible, keyframe], 1))
        x1 = self.decoder_down[0](x0)
        x = self.decoder_mid(self.decoder_down[1](x1))
        x = self.decoder_up[0](torch.cat([upsample(x), x1], 1))
        x = self.decoder_up[1](torch.cat([upsample(x), x0], 1))
        fill = self.decoder_out(x)
        return visible * warped + (1 - visible) * fill

    def forward(
        self, keyframe: torch.Tensor, frame: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction: (frame as decoded, its latent)."""
        latent = self.encode(keyframe, frame)
        return self.decode(keyframe, latent), latent

"""IP-Adapter plumbing for `PretrainedKeyframer`: loading an adapter and its image encoder into
a text-to-image pipeline (safetensors only), and reading what kind of adapter is loaded.
"""

from __future__ import annotations

import hashlib

import torch
from diffusers.models.embeddings import (
    ImageProjection,
    IPAdapterPlusImageProjection,
    MultiIPAdapterImageProjection,
)
from transformers import CLIPVisionModelWithProjection

from reelsmith.errors import InputError
from reelsmith.renderer.loading import dtype_argument, hub_subfolder, load_failure


def load_ip_adapter(
    pipe,
    model: str,
    ip_adapter: str,
    subfolder: str,
    weight_name: str,
    image_encoder: str | None,
    torch_dtype: torch.dtype | None,
) -> None:
    """Load the IP-Adapter `weight_name` from `ip_adapter`/`subfolder` into `pipe` (loaded from
    `model`), with the image encoder it reads (see `load_image_encoder`)."""
    if not hasattr(pipe, "load_ip_adapter"):
        raise InputError(f"{model}: {type(pipe).__name__} cannot take an IP-Adapter")
    load_image_encoder(pipe, model, ip_adapter, subfolder, image_encoder, torch_dtype)
    with load_failure(f"{model}: cannot load IP-Adapter {weight_name} from {ip_adapter}"):
        pipe.load_ip_adapter(
            ip_adapter, subfolder=subfolder, weight_name=weight_name, image_encoder_folder=None
        )


def load_image_encoder(
    pipe,
    model: str,
    ip_adapter: str,
    subfolder: str,
    image_encoder: str | None,
    torch_dtype: torch.dtype | None,
) -> None:
    """Register the CLIP image encoder the IP-Adapter reads, found as `load_ip_adapter` would
    find it but from safetensors only: `image_encoder`, else the pipe's own, else the one
    beside the IP-Adapter weights."""
    if image_encoder is not None:
        source, folder = hub_subfolder(image_encoder)
    elif getattr(pipe, "image_encoder", None) is None:
        source = ip_adapter
        folder = "/".join(p for p in (subfolder, "image_encoder") if p)
    else:
        return
    with load_failure(f"{model}: cannot load the image encoder from {source}"):
        encoder = CLIPVisionModelWithProjection.from_pretrained(
            source, subfolder=folder, use_safetensors=True, **dtype_argument(torch_dtype, "dtype")
        )
        pipe.register_modules(image_encoder=encoder)


def image_projection(pipe, name: str) -> ImageProjection | IPAdapterPlusImageProjection | None:
    """The loaded IP-Adapter's image projection, or None when none is loaded; ValueError when
    the keyframer `name` cannot drive what is loaded."""
    projection = getattr(getattr(pipe, "unet", None), "encoder_hid_proj", None)
    if not isinstance(projection, MultiIPAdapterImageProjection):
        return None
    layers = projection.image_projection_layers
    if len(layers) != 1:
        raise ValueError(f"{len(layers)} IP-Adapters are loaded; {name} drives exactly one")
    if not isinstance(layers[0], ImageProjection | IPAdapterPlusImageProjection):
        raise ValueError(
            f"IP-Adapter of kind {type(layers[0]).__name__} is not supported; "
            "load a plain or Plus IP-Adapter"
        )
    if getattr(pipe, "image_encoder", None) is None:
        raise ValueError("the pipe has an IP-Adapter but no image_encoder to encode references")
    return layers[0]


def encoder_id(encoder) -> str:
    """An image encoder by class, width and a digest of its weights: a path would change between
    machines, a class name alone would not tell two checkpoints apart."""
    digest = hashlib.sha256()
    for tensor in encoder.state_dict().values():
        sample = tensor.detach().flatten()[:256].float().cpu().numpy()
        digest.update(sample.tobytes())
    width = encoder.config.hidden_size
    return f"{type(encoder).__name__}-{width}-{digest.hexdigest()[:12]}"


def embed_shape(config, hidden_states: bool) -> tuple[int, ...]:
    """One image's embedding from an encoder of `config`: (D,) image embeds, or (T, D) hidden
    states (an IP-Adapter Plus reads those)."""
    if not hidden_states:
        return (config.projection_dim,)
    return ((config.image_size // config.patch_size) ** 2 + 1, config.hidden_size)

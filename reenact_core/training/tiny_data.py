"""Small prepared trees rendered by a generator, for the self-check and tests (the ``dataset prepare`` layout).

Frame f of a video is ``x_f = G_ψ(w_f)`` with its W+ code and DECA codes stored as ``dataset prepare`` stores
them; the caller decides the codes (measured, or planted with a known relation to the codes).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data import frame_stem, sample_paths, video_folder
from ..data.files import write_npy, write_png
from ..engine.source import image_to_uint8
from ..models.stylegan2 import Generator


@torch.no_grad()
def write_rendered_video(root: Path, id_: str, video: str, generator: Generator, mean_latent: torch.Tensor,
                         w_plus: torch.Tensor, codes: torch.Tensor, truncation: float) -> Path:
    """Writes 256-px crops of ``G_ψ(w_plus[f])`` with ``w_plus[f]`` (n, D) and ``codes[f]`` (236,) as video ``id_/video``."""
    folder = video_folder(root, id_, video)
    crops = image_to_uint8(generator.synthesize(w_plus, truncation=truncation, truncation_latent=mean_latent).image)
    for f, crop in enumerate(crops):
        paths = sample_paths(folder, frame_stem(f))
        write_png(paths.crop, crop)
        write_npy(paths.w_plus, w_plus[f].float().cpu().numpy())
        write_npy(paths.deca_codes, codes[f].float().cpu().numpy())
    return folder

"""Tiny random networks and small prepared trees for the self-check, tests and benches (never a result).

A tree's frame f of a video is ``x_f = G_ψ(w_f)`` with its W+ code and DECA codes stored as ``dataset prepare``
stores them; the caller decides the codes (measured, or planted with a known relation to the W+ codes).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data import frame_stem, sample_paths, video_folder
from ..data.files import write_npy
from ..engine.render import image_to_uint8
from ..faces.images import save_image
from ..models.flame import Flame, FlameConfig
from ..models.stylegan2 import Generator


@torch.no_grad()
def write_rendered_video(root: Path, id_: str, video: str, generator: Generator, mean_latent: torch.Tensor,
                         w_plus: torch.Tensor, codes: torch.Tensor, truncation: float) -> Path:
    """Writes 256-px crops of ``G_ψ(w_plus[f])`` with ``w_plus[f]`` (n, D) and ``codes[f]`` (236,) as video ``id_/video``."""
    folder = video_folder(root, id_, video)
    crops = image_to_uint8(generator.synthesize(w_plus, truncation=truncation, truncation_latent=mean_latent).image)
    for f, crop in enumerate(crops):
        paths = sample_paths(folder, frame_stem(f))
        save_image(paths.crop, crop)
        write_npy(paths.w_plus, w_plus[f].float().cpu().numpy())
        write_npy(paths.deca_codes, codes[f].float().cpu().numpy())
    return folder


# Tiny architectures of the self-check, tests and benches (random weights: never a result).
TINY_GENERATOR = {"size": 64, "style_dim": 32, "n_mlp": 2, "channels": [32, 32, 32, 16, 16]}
TINY_DECA = {"base_width": 4, "blocks": [1, 1, 1, 1], "hidden": 32}
TINY_ARCFACE = {"widths": [8, 16, 16, 32], "units": [1, 1, 1, 1], "se_reduction": 4, "embedding_dim": 32}
TINY_FLAME = {"n_vertices": 60, "n_faces": 40}


def random_flame(seed: int = 0, n_vertices: int = 60, n_faces: int = 40) -> Flame:
    """A FLAME-structured head model with random data (a small mesh; landmarks on random faces)."""
    from ..models.flame import N_CONTOUR, N_CONTOUR_ROWS, N_JOINTS, N_LANDMARKS, N_STATIC

    g = torch.Generator().manual_seed(seed)
    flame = Flame(FlameConfig(n_vertices=n_vertices, n_faces=n_faces))
    c = flame.config

    def bary(*shape):
        w = torch.rand(*shape, 3, generator=g) + 0.2
        return w / w.sum(-1, keepdim=True)

    def faces(*shape):
        return torch.randint(n_faces, shape, generator=g)

    weights = torch.rand(n_vertices, N_JOINTS, generator=g)
    joints = torch.zeros(N_JOINTS, n_vertices)
    for j in range(N_JOINTS):
        joints[j, torch.randperm(n_vertices, generator=g)[:4]] = 0.25
    values = {
        "v_template": torch.randn(n_vertices, 3, generator=g) * 0.1,
        "shapedirs": torch.randn(n_vertices, 3, c.n_shape + c.n_exp, generator=g) * 1e-3,
        "posedirs": torch.randn(9 * (N_JOINTS - 1), 3 * n_vertices, generator=g) * 1e-2,
        "J_regressor": joints, "parents": torch.tensor([-1, 0, 1, 1, 1]),
        "lbs_weights": weights / weights.sum(1, keepdim=True),
        "faces_tensor": torch.randint(n_vertices, (n_faces, 3), generator=g),
        "lmk_faces_idx": faces(N_STATIC), "lmk_bary_coords": bary(N_STATIC),
        "dynamic_lmk_faces_idx": faces(N_CONTOUR_ROWS, N_CONTOUR),
        "dynamic_lmk_bary_coords": bary(N_CONTOUR_ROWS, N_CONTOUR),
        "full_lmk_faces_idx": faces(1, N_LANDMARKS), "full_lmk_bary_coords": bary(1, N_LANDMARKS),
    }
    flame.load_state_dict(values)
    return flame.eval()

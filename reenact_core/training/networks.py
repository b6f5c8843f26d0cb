"""The frozen networks of directions training, from model files (a run) or tiny and random (self-check, tests)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..models.arcface import ArcFace, ArcFaceConfig
from ..models.deca import DecaConfig, DecaEncoder
from ..errors import MissingModelError
from ..models.lpips import (ALEXNET_CONVS, ALEXNET_FILE, ALEXNET_URL, CONVERTED_FILE, LINEAR_FILE, LINEAR_URL, LPIPS,
                            load_lpips)
from ..models.lpips import lpips_files as lpips_files_in
from ..models.stylegan2 import Generator, GeneratorConfig
from ..weights import find_model_file, load_model
from .config import DirectionsTrainConfig
from .directions import DirectionsNetworks, loss_options
from .losses import TrainingLosses
from .tiny import TINY_ARCFACE, TINY_DECA, TINY_GENERATOR, random_flame


TINY_RGB_GAIN = 0.1   # scales the random ToRGB weights of tiny generators


class DecaMeasure(nn.Module):
    """DECA codes (B, 236) of generated images (B, 3, H, W) in [-1, 1], differentiable in the images; DECA is
    frozen (eval, no parameter gradients)."""

    def __init__(self, deca: nn.Module):
        super().__init__()
        self.deca = deca.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> DecaMeasure:
        self.training = mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from ..faces.deca_crop import deca_warp
        from ..imaging import to_deca_input

        h, w = images.shape[-2:]
        theta = images.new_tensor([[223 / (w - 1), 0, 0], [0, 223 / (h - 1), 0]]).expand(len(images), 2, 3)
        return self.deca(deca_warp(to_deca_input(images), theta))


def tiny_networks(config: DirectionsTrainConfig, seed: int = 0, device: str | torch.device = "cpu",
                  generator: dict | None = None) -> DirectionsNetworks:
    """Tiny random G (64 px unless ``generator`` gives another config), DECA, FLAME, ArcFace and LPIPS."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = Generator(GeneratorConfig.from_dict(generator or TINY_GENERATOR)).to(device).eval()
        with torch.no_grad():       # images mostly inside [-1, 1], as a trained G's
            for name, p in g.named_parameters():
                if name.startswith("to_rgb") and name.endswith("conv.weight"):
                    p.mul_(TINY_RGB_GAIN)
        deca = DecaEncoder(DecaConfig.from_dict(TINY_DECA)).to(device).eval().requires_grad_(False)
        arcface = ArcFace(ArcFaceConfig.from_dict(TINY_ARCFACE))
        lpips = LPIPS()
        for i in range(len(ALEXNET_CONVS)):            # non-negative heads, as the published ones
            getattr(lpips, f"lin{i}").model[1].weight.data.abs_()
    criteria = TrainingLosses(random_flame(seed), arcface, lpips, loss_options(config)).to(device)
    return DirectionsNetworks(g, g.mean_latent(512, seed), DecaMeasure(deca), criteria, {}, random_weights=True)


def build_networks(config: DirectionsTrainConfig, folders: Sequence[Path], generator: str | None,
                   device: torch.device) -> DirectionsNetworks:
    """G (``generator``, else the canonical file), DECA, FLAME, and ArcFace and LPIPS where their λ is not 0,
    from ``folders``. Raises MissingModelError naming every missing file, its source and the command that
    converts it (one line)."""
    folders = [Path(f) for f in folders]
    roles = {"generator": "stylegan2", "deca": "deca", "flame": "flame"}
    if config.lambda_identity:
        roles["arcface"] = "arcface"
    paths, missing = {}, []
    for role, kind_name in roles.items():
        try:
            paths[role] = Path(generator) if role == "generator" and generator else find_model_file(kind_name, folders)
        except MissingModelError as exc:
            missing.append(str(exc))
    lpips_files = lpips_files_in(folders) if config.lambda_perceptual else []
    if config.lambda_perceptual and not lpips_files:
        missing.append(f"missing LPIPS weights: put '{CONVERTED_FILE}', or '{ALEXNET_FILE}' ({ALEXNET_URL}) and "
                       f"'{LINEAR_FILE}' ({LINEAR_URL}), in {', '.join(map(str, folders))}")
    if missing:
        raise MissingModelError(" | ".join(missing))
    loaded = {role: load_model(path, roles[role], device) for role, path in paths.items()}
    lpips = load_lpips(lpips_files, device) if lpips_files else None
    arcface = loaded["arcface"].module if "arcface" in loaded else None
    criteria = TrainingLosses(loaded["flame"].module, arcface, lpips, loss_options(config)).to(device)
    g = loaded["generator"]
    files = {**paths, **{f"lpips_{i}": p for i, p in enumerate(lpips_files)}}
    random = any(m.metadata.get("random_weights") == "true" for m in loaded.values())
    return DirectionsNetworks(g.module, g.mean_latent, DecaMeasure(loaded["deca"].module), criteria, files, random)

"""The frozen networks of directions training, from model files (a run) or tiny and random (self-check, tests)."""
from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..command import command
from ..errors import MissingModelError
from ..faces.reference_crop import CROP_SIZE
from ..files import find_file
from ..measure import measure_codes
from ..models.arcface import ArcFace, ArcFaceConfig
from ..models.deca import DecaConfig, DecaEncoder
from ..models.lpips import ALEXNET_CONVS, ALEXNET_FILE, ALEXNET_URL, LINEAR_FILE, LINEAR_URL, LPIPS
from ..models.stylegan2 import Generator, GeneratorConfig
from ..weights import find_lpips, find_model_file, has_random_weights, kind, load_model
from .config import DirectionsTrainConfig
from .directions import DirectionsNetworks, loss_options
from .losses import TrainingLosses
from .tiny import TINY_ARCFACE, TINY_DECA, TINY_GENERATOR, random_flame


TINY_RGB_GAIN = 0.1   # scales the random ToRGB weights of tiny generators


class DecaMeasure(nn.Module):
    """DECA codes (B, 236) of generated images (B, 3, H, W) in [-1, 1] (``measure.measure_codes``), with
    gradients to the images when autograd is on; DECA is frozen (eval, no parameter gradients).

    ``crop="canonical"``: the canonical box of aligned crops. ``"landmarks"``: DECA's box from 68 landmarks
    found on each image (the reference's way), the canonical box where no face is found.
    """

    def __init__(self, deca: nn.Module, crop: str = "canonical"):
        super().__init__()
        self.deca = deca.eval().requires_grad_(False)
        self.crop = crop

    def train(self, mode: bool = True) -> DecaMeasure:
        self.training = mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grad = torch.is_grad_enabled()
        if self.crop == "canonical":
            return measure_codes(self.deca, images, None, grad=grad)
        kpt68 = landmarks_or_none(images)
        found = torch.tensor([k is not None for k in kpt68], device=images.device)
        codes = measure_codes(self.deca, images, None, grad=grad)
        if bool(found.any()):
            boxes = torch.stack([k for k in kpt68 if k is not None]).to(images.device)
            codes = codes.index_put((found.nonzero()[:, 0],), measure_codes(self.deca, images[found], boxes,
                                                                            grad=grad))
        return codes


def landmarks_or_none(images: torch.Tensor) -> list[torch.Tensor | None]:
    """68 landmarks (68, 2) of the largest face of each image, in its pixels, or None (dlib, no gradients)."""
    from ..engine.render import image_to_uint8
    from ..faces.tracking import choose_face
    from ..landmarks import detect_faces

    scale = images.shape[-1] / CROP_SIZE
    found = []
    for frame in image_to_uint8(images.detach()):
        face = choose_face(detect_faces(frame), "largest")
        found.append(None if face is None else torch.as_tensor(face.landmarks, dtype=torch.float32) * scale)
    return found


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
    return DirectionsNetworks(g, g.mean_latent(512, seed), DecaMeasure(deca, config.measure_crop), criteria, {},
                              random_weights=True)


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
    lpips = find_lpips(folders, device) if config.lambda_perceptual else None
    if config.lambda_perceptual and lpips is None:
        missing.append(missing_lpips_message(folders))
    if missing:
        raise MissingModelError("\n".join(missing))
    loaded = {role: load_model(path, roles[role], device) for role, path in paths.items()}
    lpips_files = found_lpips_files(folders) if lpips is not None else []
    arcface = loaded["arcface"].module if "arcface" in loaded else None
    criteria = TrainingLosses(loaded["flame"].module, arcface, lpips, loss_options(config)).to(device)
    g = loaded["generator"]
    files = {**paths, **{f"lpips_{i}": p for i, p in enumerate(lpips_files)}}
    random = any(has_random_weights(m.metadata) for m in loaded.values())
    return DirectionsNetworks(g.module, g.mean_latent, DecaMeasure(loaded["deca"].module, config.measure_crop),
                              criteria, files, random)


def missing_lpips_message(folders: Sequence[Path]) -> str:
    """The one-line message for absent LPIPS weights: the files, their sources and the conversion command."""
    return (f"missing LPIPS weights: put '{kind('lpips').canonical_file}' ({command()} convert "
            f"alex.pth {shlex.quote(str(folders[0]))}), or '{ALEXNET_FILE}' ({ALEXNET_URL}) and '{LINEAR_FILE}' "
            f"({LINEAR_URL}), in {', '.join(map(str, folders))}")


def found_lpips_files(folders: Sequence[Path]) -> list[Path]:
    """The LPIPS weight files ``find_lpips`` reads from ``folders``: the converted file, else the two official ones."""
    converted = find_file(kind("lpips").canonical_file, folders)
    return [converted] if converted else [find_file(n, folders) for n in (ALEXNET_FILE, LINEAR_FILE)]

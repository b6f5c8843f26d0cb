"""The containers of the official checkpoint files, in one place: reading them and writing them back.

| file (kind)                               | container                                                          |
|-------------------------------------------|--------------------------------------------------------------------|
| stylegan-voxceleb.pt (stylegan2)          | {'g_ema': state_dict}                                              |
| rosinality FFHQ .pt (stylegan2)           | {'g_ema', 'latent_avg' [512], 'args': Namespace, ('g', 'd', ...)} |
| e4e-voxceleb.pt (e4e)                     | {'e': state_dict}; no latent average is added                      |
| original e4e .pt (e4e)                    | {'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg', 'opts'}   |
| deca_model.tar (deca)                     | {'E_flame': state_dict, 'E_detail', 'D_detail', ...}               |
| A_matrix.pt (directions)                  | {'A_matrix': state_dict, 'learned_directions', 'shift_scale', ...} |
| alexnet-owt-7be5be79.pth + alex.pth (lpips) | two flat state dicts: torchvision AlexNet, PerceptualSimilarity heads |
| model_ir_se50.pth (arcface)               | the state dict itself (input_layer.*, body.*, output_layer.*)      |
(reference-method §2.1–2.5). Either LPIPS file converts both; the other must lie beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import MissingModelError, WeightsError
from ..models.lpips import ALEXNET_FILE, ALEXNET_URL, LINEAR_FILE, LINEAR_URL
from .safe_load import load_checkpoint

# Scalars A_matrix.pt carries beside its state dict (§2.4); `shift_dim` is absent from self-trained files.
# Keys that identify model_ir_se50.pth, a plain state dict (no container).
ARCFACE_MARKERS = {"input_layer.0.weight", "output_layer.3.weight"}
DIRECTIONS_EXTRAS = ("learned_directions", "shift_scale", "w_plus", "num_layers_shift", "shift_dim")


@dataclass
class OfficialCheckpoint:
    """The part of an official file we use."""

    kind: str
    layout: str                                   # human-readable name of the container
    state_dict: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None = None        # StyleGAN2 w_avg [512] or original-e4e latent_avg [n, 512]
    extras: dict = field(default_factory=dict)    # A_matrix.pt scalars


def read_official(path: str | Path) -> OfficialCheckpoint:
    """Identify an official checkpoint by its top-level keys and extract its state dict (safe load)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    if "g_ema" in ckpt:
        return OfficialCheckpoint("stylegan2", "rosinality StyleGAN2 ('g_ema')", _tensors(path, ckpt["g_ema"]),
                                  latent_avg=_optional_tensor(path, ckpt, "latent_avg"))
    if "e" in ckpt:
        return OfficialCheckpoint("e4e", "e4e of the reenactment repository ('e')", _tensors(path, ckpt["e"]))
    if "state_dict" in ckpt and any(k.startswith("encoder.") for k in ckpt["state_dict"]):
        latent_avg = _optional_tensor(path, ckpt, "latent_avg")
        if latent_avg is None:
            raise WeightsError(f"{path.name}: original e4e layout without 'latent_avg', which it must add")
        encoder = {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
        return OfficialCheckpoint("e4e", "original e4e ('state_dict' with 'encoder.' keys, 'latent_avg')",
                                  _tensors(path, encoder), latent_avg=latent_avg)
    if "E_flame" in ckpt:
        return OfficialCheckpoint("deca", "DECA ('E_flame')", _tensors(path, ckpt["E_flame"]))
    if "A_matrix" in ckpt:
        extras = {k: ckpt[k] for k in DIRECTIONS_EXTRAS if k in ckpt}
        return OfficialCheckpoint("directions", "directions matrix ('A_matrix')", _tensors(path, ckpt["A_matrix"]),
                                  extras=extras)
    if ARCFACE_MARKERS <= set(ckpt):
        return OfficialCheckpoint("arcface", "IR-SE ArcFace state dict (TreB1eN)", _tensors(path, ckpt))
    if ckpt and all(isinstance(k, str) and k.startswith("lin") for k in ckpt):
        return _lpips(path, partner=path.with_name(ALEXNET_FILE), linear=path)
    if "features.0.weight" in ckpt and "classifier.1.weight" in ckpt:
        return _lpips(path, partner=path.with_name(LINEAR_FILE), alexnet=path)
    keys = ", ".join(sorted(map(str, ckpt))[:8]) or "none"
    raise WeightsError(f"{path.name}: not a known official checkpoint (top-level keys: {keys}); expected "
                       f"'g_ema' (StyleGAN2), 'e' or 'state_dict'+'latent_avg' (e4e), 'E_flame' (DECA), 'A_matrix' (A), "
                       f"LPIPS's {ALEXNET_FILE} / {LINEAR_FILE}, or an IR-SE state dict (ArcFace)")


def _lpips(path: Path, partner: Path, **files: Path) -> OfficialCheckpoint:
    if not partner.is_file():
        url = ALEXNET_URL if partner.name == ALEXNET_FILE else LINEAR_URL
        raise MissingModelError(f"{path.name} is half of LPIPS: put {partner.name} beside it (from {url})")
    files.setdefault("alexnet", partner)
    files.setdefault("linear", partner)
    return OfficialCheckpoint("lpips", "LPIPS (torchvision AlexNet + PerceptualSimilarity v0.1 heads)",
                              read_lpips_official(files["alexnet"], files["linear"]))


def read_lpips_official(alexnet: Path, linear: Path) -> dict[str, torch.Tensor]:
    """LPIPS's state dict from the two published files (AlexNet's unused ``classifier.*`` left out)."""
    state_dict = {}
    for path in (Path(alexnet), Path(linear)):
        state_dict.update({k: v for k, v in _tensors(path, load_checkpoint(path)).items()
                           if not k.startswith("classifier.")})
    return state_dict


def write_official(path: str | Path, kind: str, state_dict: dict[str, torch.Tensor], *,
                   latent_avg: torch.Tensor | None = None, extras: dict | None = None,
                   original_e4e: bool = False) -> Path:
    """Write a state dict in the official container of its kind (the inverse of ``read_official``)."""
    if kind == "stylegan2":
        ckpt = {"g_ema": state_dict} | ({"latent_avg": latent_avg} if latent_avg is not None else {})
    elif kind == "e4e" and original_e4e:
        ckpt = {"state_dict": {f"encoder.{k}": v for k, v in state_dict.items()}, "latent_avg": latent_avg,
                "opts": {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True}}
    elif kind == "e4e":
        ckpt = {"e": state_dict}
    elif kind == "deca":
        ckpt = {"E_flame": state_dict}
    elif kind == "directions":
        ckpt = {"A_matrix": state_dict, **(extras or {})}
    elif kind == "arcface":
        ckpt = dict(state_dict)
    else:
        raise WeightsError(f"no official layout for kind {kind!r}")
    torch.save(ckpt, str(path))
    return Path(path)


def _tensors(path: Path, sd) -> dict[str, torch.Tensor]:
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path.name}: the state dict is not a mapping of names to tensors")
    return dict(sd)


def _optional_tensor(path: Path, ckpt: dict, key: str) -> torch.Tensor | None:
    value = ckpt.get(key)
    if value is not None and not isinstance(value, torch.Tensor):
        raise WeightsError(f"{path.name}: '{key}' is a {type(value).__name__}, expected a tensor")
    return value

"""FLAME head model as DECA uses it for the training losses: LBS with 5 joints, the 68 landmarks with DECA's
dynamic contour, the 68 static ("full") 3-D landmarks, and DECA's decode with a fixed orthographic camera
(training-and-fsr §3.1–3.4; yfeng95/DECA ``decalib/models/FLAME.py``, ``lbs.py``, ``deca.py: decode``).

Buffer names are those of DECA's ``FLAME`` module. Every buffer is data of the (per-user licensed) FLAME model:
the module is built empty and filled from ``flame-generic.safetensors``, made by
``python -m reenact_core convert generic_model.pkl --landmarks landmark_embedding.npy``. Everything is
differentiable with respect to the shape, expression and pose parameters except the contour row choice
(a rounded angle, as in DECA).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from reenact_core.errors import InputError, WeightsError
from reenact_core.models.config import ModelConfig
from reenact_core.models.kind import TRAINING, ModelKind

# Joints of FLAME's kinematic tree, in order: global (root), neck, jaw, left eye, right eye.
N_JOINTS = 5
NECK_JOINT = 1
JAW_JOINT = 2
PARENTS = (-1, 0, 1, 1, 1)    # kinematic tree: neck on the root, jaw and eyes on the neck
# iBUG-68 landmarks: 17 contour points chosen by head yaw (dynamic), then 51 fixed points.
N_CONTOUR = 17
N_STATIC = 51
N_LANDMARKS = N_CONTOUR + N_STATIC
# Contour rows: 0..MAX_CONTOUR_DEG for yaw 0..39°, then 40..78 for −1..−39°, 78 also for any yaw below −39°.
MAX_CONTOUR_DEG = 39
N_CONTOUR_ROWS = 2 * MAX_CONTOUR_DEG + 1
RODRIGUES_EPS = 1e-8          # added to each component before the norm (lbs.py batch_rodrigues)
# DECA's training decode: camera (scale, tx, ty) = (8, 0, 0) into the 224-px crop frame.
TRAINING_CAMERA = (8.0, 0.0, 0.0)
IMAGE_SIZE = 224


@dataclass(frozen=True)
class FlameConfig(ModelConfig):
    """Sizes of a FLAME model; the defaults are FLAME 2020 (``generic_model.pkl``) with DECA's 100 shape and
    50 expression components.

    Args:
        n_shape: identity shape coefficients used (``shapedirs[..., :n_shape]``).
        n_exp: expression coefficients used (``shapedirs[..., 300:300 + n_exp]`` of the file).
        n_vertices: mesh vertices.
        n_faces: mesh triangles.
    """

    n_shape: int = 100
    n_exp: int = 50
    n_vertices: int = 5023
    n_faces: int = 9976

    def __post_init__(self) -> None:
        if min(self.n_shape, self.n_exp, self.n_vertices, self.n_faces) < 1:
            raise ValueError(f"FLAME sizes must be positive, got {self}")


class FlameOutput(NamedTuple):
    """FLAME forward results, in FLAME's metric model space (metres).

    vertices ``(B, V, 3)``; landmarks2d ``(B, 68, 3)`` (dynamic contour, still 3-D); landmarks3d ``(B, 68, 3)``
    (the static "full" set); joints_rest ``(B, 5, 3)`` (shaped, unposed); joints_posed ``(B, 5, 3)``;
    contour_row ``(B,)`` int64 (row of the contour table, 0..78).
    """

    vertices: torch.Tensor
    landmarks2d: torch.Tensor
    landmarks3d: torch.Tensor
    joints_rest: torch.Tensor
    joints_posed: torch.Tensor
    contour_row: torch.Tensor


class FlameDecode(NamedTuple):
    """DECA's ``decode`` geometry in pixels of the 224-px crop frame (x right, y down; z scaled alike).

    landmarks2d ``(B, 68, 2)``; landmarks3d ``(B, 68, 3)``; trans_verts ``(B, V, 3)``.
    """

    landmarks2d: torch.Tensor
    landmarks3d: torch.Tensor
    trans_verts: torch.Tensor


def batch_rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(N, 3, 3)`` of axis-angle vectors ``(N, 3)`` (radians), as lbs.py computes them:
    ``θ = ‖v + 1e-8‖``, ``n = v/θ``, ``R = I + sin θ·K + (1 − cos θ)·K²``; exactly I for v = 0."""
    angle = torch.linalg.vector_norm(axis_angle + RODRIGUES_EPS, dim=1, keepdim=True)
    direction = axis_angle / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    rx, ry, rz = direction.unbind(1)
    zeros = torch.zeros_like(rx)
    k = torch.stack([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], 1).view(-1, 3, 3)
    ident = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)[None]
    return ident + sin * k + (1 - cos) * torch.bmm(k, k)


def yaw_from_rotation(rotation: torch.Tensor) -> torch.Tensor:
    """DECA's ``rot_mat_to_euler``: ``atan2(−R20, sqrt(R00² + R10²))`` in radians, ``(B, 3, 3)`` → ``(B,)``."""
    sy = torch.sqrt(rotation[:, 0, 0] * rotation[:, 0, 0] + rotation[:, 1, 0] * rotation[:, 1, 0])
    return torch.atan2(-rotation[:, 2, 0], sy)


def contour_rows(yaw: torch.Tensor) -> torch.Tensor:
    """Contour-table rows of yaw angles (radians, DECA's sign: axis-angle (0, θ, 0) is +θ).

    ``a = round(min(yaw°, 39))``; row ``a`` for a ≥ 0, ``39 − a`` for −39 ≤ a < 0, 78 below. Not differentiable.
    """
    a = torch.round(torch.clamp(yaw * 180.0 / torch.pi, max=MAX_CONTOUR_DEG)).to(torch.long)
    negative = torch.where(a < -MAX_CONTOUR_DEG, torch.full_like(a, N_CONTOUR_ROWS - 1), MAX_CONTOUR_DEG - a)
    return torch.where(a < 0, negative, a)


def vertices_to_landmarks(vertices: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor,
                          bary: torch.Tensor) -> torch.Tensor:
    """Barycentric points ``(B, L, 3)`` on triangles ``face_idx (B, L)`` of ``vertices (B, V, 3)``, with
    ``bary (B, L, 3)``."""
    corners = faces[face_idx]                                           # (B, L, 3) vertex indices
    batch = torch.arange(vertices.shape[0], device=vertices.device)[:, None, None]
    points = vertices[batch, corners]                                   # (B, L, 3 corners, 3 coords)
    return torch.einsum("blfi,blf->bli", points, bary)


def orthographic_to_pixels(points: torch.Tensor, camera: torch.Tensor, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """DECA's ``batch_orth_proj`` then its image mapping: ``s·(xy + t), s·z``, y and z negated, then
    ``·size/2 + size/2``. ``points (B, N, 3)``, ``camera (B, 3)`` (scale, tx, ty) → ``(B, N, 3)`` pixels."""
    camera = camera.reshape(-1, 1, 3)
    projected = camera[:, :, 0:1] * torch.cat([points[:, :, :2] + camera[:, :, 1:], points[:, :, 2:]], 2)
    flip = projected.new_tensor([1.0, -1.0, -1.0])
    return (projected * flip) * image_size / 2 + image_size / 2


class Flame(nn.Module):
    """FLAME with DECA's landmark embedding. Build empty and load a converted file (``load_model``).

    Buffers (DECA's names): ``v_template (V, 3)``, ``shapedirs (V, 3, n_shape + n_exp)``, ``posedirs (36, 3V)``,
    ``J_regressor (5, V)``, ``parents (5,)`` int64, ``lbs_weights (V, 5)``, ``faces_tensor (F, 3)`` int64,
    ``lmk_faces_idx (51,)``, ``lmk_bary_coords (51, 3)``, ``dynamic_lmk_faces_idx (79, 17)``,
    ``dynamic_lmk_bary_coords (79, 17, 3)``, ``full_lmk_faces_idx (1, 68)``, ``full_lmk_bary_coords (1, 68, 3)``.
    """

    def __init__(self, config: FlameConfig = FlameConfig()):
        super().__init__()
        self.config = config
        v, f, betas = config.n_vertices, config.n_faces, config.n_shape + config.n_exp
        shapes = {
            "v_template": ((v, 3), torch.float32), "shapedirs": ((v, 3, betas), torch.float32),
            "posedirs": ((9 * (N_JOINTS - 1), 3 * v), torch.float32), "J_regressor": ((N_JOINTS, v), torch.float32),
            "parents": ((N_JOINTS,), torch.long), "lbs_weights": ((v, N_JOINTS), torch.float32),
            "faces_tensor": ((f, 3), torch.long),
            "lmk_faces_idx": ((N_STATIC,), torch.long), "lmk_bary_coords": ((N_STATIC, 3), torch.float32),
            "dynamic_lmk_faces_idx": ((N_CONTOUR_ROWS, N_CONTOUR), torch.long),
            "dynamic_lmk_bary_coords": ((N_CONTOUR_ROWS, N_CONTOUR, 3), torch.float32),
            "full_lmk_faces_idx": ((1, N_LANDMARKS), torch.long),
            "full_lmk_bary_coords": ((1, N_LANDMARKS, 3), torch.float32),
        }
        for name, (shape, dtype) in shapes.items():
            self.register_buffer(name, torch.zeros(shape, dtype=dtype))
        self.parents.copy_(torch.tensor(PARENTS))

    def forward(self, shape_params: torch.Tensor, expression_params: torch.Tensor,
                pose_params: torch.Tensor) -> FlameOutput:
        """FLAME mesh and landmarks (DECA ``FLAME.forward``; eye and neck poses zero).

        Args:
            shape_params: ``(B, n_shape)`` identity coefficients.
            expression_params: ``(B, n_exp)`` expression coefficients.
            pose_params: ``(B, 6)`` axis-angle radians: global rotation, then jaw.
        """
        c = self.config
        b = shape_params.shape[0]
        if (tuple(shape_params.shape) != (b, c.n_shape) or tuple(expression_params.shape) != (b, c.n_exp)
                or tuple(pose_params.shape) != (b, 6)):
            got = ", ".join(str(tuple(t.shape)) for t in (shape_params, expression_params, pose_params))
            raise InputError(f"FLAME expects shape (B, {c.n_shape}), expression (B, {c.n_exp}), pose (B, 6); got {got}")
        dtype = self.v_template.dtype
        betas = torch.cat([shape_params, expression_params], 1).to(dtype)
        zeros = pose_params.new_zeros(b, 3, dtype=dtype)
        pose_params = pose_params.to(dtype)
        full_pose = torch.cat([pose_params[:, :3], zeros, pose_params[:, 3:], zeros, zeros], 1)
        vertices, joints_rest, joints_posed, rotations = self._lbs(betas, full_pose)

        # Neck pose is zero, so the rotation up the neck chain (R_global · R_neck) is R_global.
        row = contour_rows(yaw_from_rotation(rotations[:, 0].detach()))
        face_idx = torch.cat([self.dynamic_lmk_faces_idx[row], self.lmk_faces_idx.expand(b, -1)], 1)
        bary = torch.cat([self.dynamic_lmk_bary_coords[row], self.lmk_bary_coords.expand(b, -1, -1)], 1)
        landmarks2d = vertices_to_landmarks(vertices, self.faces_tensor, face_idx, bary)
        landmarks3d = vertices_to_landmarks(vertices, self.faces_tensor, self.full_lmk_faces_idx.expand(b, -1),
                                            self.full_lmk_bary_coords.expand(b, -1, -1))
        return FlameOutput(vertices, landmarks2d, landmarks3d, joints_rest, joints_posed, row)

    def _lbs(self, betas: torch.Tensor, full_pose: torch.Tensor):
        b = betas.shape[0]
        v_shaped = self.v_template + torch.einsum("bl,mkl->bmk", betas, self.shapedirs)
        joints = torch.einsum("bik,ji->bjk", v_shaped, self.J_regressor)
        rotations = batch_rodrigues(full_pose.reshape(-1, 3)).view(b, N_JOINTS, 3, 3)
        ident = torch.eye(3, dtype=betas.dtype, device=betas.device)
        pose_feature = (rotations[:, 1:] - ident).reshape(b, -1)
        v_posed = torch.matmul(pose_feature, self.posedirs).view(b, -1, 3) + v_shaped
        joints_posed, transforms = self._rigid_transform(rotations, joints)
        skinning = torch.matmul(self.lbs_weights.expand(b, -1, -1), transforms[:, :, :3].reshape(b, N_JOINTS, 12))
        skinning = skinning.view(b, -1, 3, 4)
        # Each vertex's 3×4 transform applied to (v, 1), as sums over the row (no per-vertex matmul calls).
        vertices = (skinning[..., :3] * v_posed[:, :, None, :]).sum(-1) + skinning[..., 3]
        return vertices, joints, joints_posed, rotations

    def _rigid_transform(self, rotations: torch.Tensor, joints: torch.Tensor):
        """lbs.py ``batch_rigid_transform``: posed joints ``(B, 5, 3)`` and the skinning transforms
        ``(B, 5, 4, 4)`` (each joint's world transform with its rest position removed)."""
        parents = self.parents.tolist()
        joints = joints[..., None]
        relative = torch.cat([joints[:, :1], joints[:, 1:] - joints[:, parents[1:]]], 1)
        bottom = joints.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(*relative.shape[:2], 1, 4)
        local = torch.cat([torch.cat([rotations, relative], 3), bottom], 2)
        chain = [local[:, 0]]
        for i in range(1, N_JOINTS):
            chain.append(torch.matmul(chain[parents[i]], local[:, i]))
        world = torch.stack(chain, 1)
        rest = torch.matmul(world, torch.cat([joints, torch.zeros_like(joints[:, :, :1])], 2))
        transforms = world - torch.nn.functional.pad(rest, [3, 0])
        return world[:, :, :3, 3], transforms

    def decode(self, shape_params: torch.Tensor, expression_params: torch.Tensor, pose_params: torch.Tensor,
               camera: torch.Tensor | None = None) -> FlameDecode:
        """DECA's ``decode`` geometry: FLAME, then the orthographic camera into the 224-px frame.

        ``camera (B, 3)`` (scale, tx, ty) defaults to the training losses' fixed ``[8, 0, 0]``.
        """
        out = self(shape_params, expression_params, pose_params)
        if camera is None:
            camera = out.vertices.new_tensor(TRAINING_CAMERA).expand(out.vertices.shape[0], 3)
        return FlameDecode(orthographic_to_pixels(out.landmarks2d, camera)[:, :, :2],
                           orthographic_to_pixels(out.landmarks3d, camera),
                           orthographic_to_pixels(out.vertices, camera))


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> FlameConfig:
    """Sizes of a converted FLAME state dict (DECA buffer names, ``n_exp`` of 50 unless the file says so).

    Raises WeightsError if a needed buffer is missing.
    """
    for key in ("shapedirs", "faces_tensor"):
        if key not in state_dict:
            raise WeightsError(f"FLAME data lacks '{key}': not a converted FLAME model")
    v, _, n_betas = state_dict["shapedirs"].shape
    n_exp = FlameConfig.n_exp
    if n_betas <= n_exp:
        raise WeightsError(f"FLAME shapedirs has {n_betas} components, expected more than {n_exp}")
    return FlameConfig(n_shape=n_betas - n_exp, n_exp=n_exp, n_vertices=v,
                       n_faces=state_dict["faces_tensor"].shape[0])


def _frozen(module: nn.Module, trainable: bool) -> nn.Module:
    """FLAME is data, never trained: eval mode without gradients either way."""
    return module.eval().requires_grad_(False)


KIND = ModelKind(
    name="flame", title="FLAME head model (training losses)", role=TRAINING, model_class=Flame,
    config_class=FlameConfig, canonical_file="flame-generic.safetensors",
    official_file="generic_model.pkl + landmark_embedding.npy",
    source="the FLAME website https://flame.is.tue.mpg.de (FLAME 2020; free registration, per-user licence, never "
           "shipped), and landmark_embedding.npy from the DECA repository https://github.com/yfeng95/DECA (data/)",
    convert_options="--landmarks landmark_embedding.npy",
    config_from_state_dict=config_from_state_dict, set_mode=_frozen,
)

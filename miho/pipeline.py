"""MIHO end to end (§5): an image -> HoNet (a coarse hand and the known object in the camera frame)
-> PiCR (the contact field on the coarse object) -> GeO (the refined grasp), batched on any device.

:func:`reconstruct` runs the three stages on a batch of images, their intrinsics and their
objects' canonical meshes; :func:`user_object` turns a user's mesh into one (checked closed and
outward-facing, centred on its centroid, subdivided to PiCR's density, never rescaled).

Images are (B, 3, H, H) floats in [0, 1], square, of any side: each network gets them resized to
its input side, with the intrinsics scaled to match (pixel centres at integer + 0.5, as in
:mod:`miho.nets.picr`). Positions are in metres in the camera frame (x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from miho import geo
from miho.checks import check_tensor
from miho.cpf import CPF
from miho.hand import load_hand
from miho.hand.model import HandModel
from miho.mesh import Meshes, is_closed, subdivide, vertex_normals, volume_and_centroid, weld
from miho.nets.hand_features import CoarseHand
from miho.nets.honet import HoNet, load_honet
from miho.nets.picr import PiCR, load_picr, picr_card, resize_projection

__all__ = ["MODES", "Reconstruction", "check_intrinsics", "coarse_estimate", "estimate", "load_image", "load_mesh",
           "predict_field", "reconstruct", "refine", "resize_images", "user_object"]  # fmt: skip

#: GeO's modes as Table 1 names them: "hand" (MIHO hand-alone: the object stays where HoNet put
#: it) and "hand-object" (both move)
MODES = ("hand", "hand-object")


@dataclass
class Reconstruction:
    """What :func:`reconstruct` returns for B samples (camera frame, metres).

    coarse: HoNet's estimate: ``hand_pose`` (B, 16, 3), ``hand_shape`` (B, S), ``hand_trans``
    (B, 3), ``obj_rot`` (B, 3, 3), ``obj_trans`` (B, 3), ``hand_verts`` (B, V, 3), ``obj_verts``
    (B, N, 3). objects: the objects at HoNet's pose (:class:`~miho.mesh.Meshes`). field: PiCR's
    field on them. refined: GeO's :class:`~miho.geo.GeOResult` (``hand_verts``, ``obj_verts``,
    poses, ``skipped``: samples GeO left as they were).
    """

    coarse: dict
    objects: Meshes
    field: CPF
    refined: geo.GeOResult


def check_intrinsics(K: torch.Tensor, batch: int) -> torch.Tensor:
    """(B, 3, 3) or (3, 3) pinhole intrinsics -> (B, 3, 3); ``ValueError`` unless the focal lengths
    are positive and the last row is (0, 0, 1) (otherwise points in front of the camera would
    project behind it, or the depth a scale implies would be negative)."""
    check_tensor("K", K, (3, 3) if K.dim() == 2 else (batch, 3, 3))
    K = K.expand(batch, 3, 3) if K.dim() == 2 else K
    last = torch.tensor([0.0, 0.0, 1.0], dtype=K.dtype, device=K.device)
    if not bool((K[:, 2] == last).all()):
        raise ValueError("K's last row must be (0, 0, 1)")
    if not bool((K[:, 0, 0] > 0).all() and (K[:, 1, 1] > 0).all()):
        raise ValueError("K must have positive focal lengths fx = K[0, 0] and fy = K[1, 1]: with others the object "
                         "would lie behind the camera")  # fmt: skip
    return K


def resize_images(images: torch.Tensor, K: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Square images (B, 3, H, H) and their (B, 3, 3) projection -> (B, 3, size, size) (antialiased
    bilinear) and the projection of the resized images."""
    H = images.shape[-1]
    if H == size:
        return images, K
    out = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0, 1), resize_projection(K, size / H)


def user_object(verts: torch.Tensor, faces: torch.Tensor, min_vertices: int = 1000,
                name: str = "object") -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """A user's object mesh made ready for :func:`reconstruct`: welded, checked closed and
    facing outwards, centred on its (solid) centroid, subdivided until it has ``min_vertices``
    (PiCR predicts a field per vertex; the shape is unchanged). Size is kept: the object's
    real size is what places it in the image. (V, 3) metres, (F, 3) -> (V', 3), (F', 3).

    Raises:
        ValueError: an empty or non-finite mesh, one that is not watertight, has no volume or
        whose faces point inwards.
    """
    check_tensor("verts", verts, (None, 3))
    check_tensor("faces", faces, (None, 3), floating=False)
    if verts.shape[0] < 4 or faces.shape[0] < 4:
        raise ValueError(f"{name} needs at least 4 vertices and 4 faces, got {verts.shape[0]} and {faces.shape[0]}")
    v, f = weld(verts.float(), faces.long(), tol=1e-7)
    if not is_closed(f):
        raise ValueError(f"{name} is not a closed (watertight) mesh: some edge has other than two faces; "
                         "close it (e.g. trimesh's fill_holes) before reconstructing")  # fmt: skip
    vol, centroid = volume_and_centroid(v, f)
    extent = float((v.max(0).values - v.min(0).values).max())
    if extent <= 0 or abs(vol) <= 1e-9 * extent**3:
        raise ValueError(f"{name} has no volume")
    if vol < 0:
        raise ValueError(f"{name}'s faces point inwards (negative signed volume): flip them (faces[:, [0, 2, 1]])")
    v = v - centroid
    while v.shape[0] < min_vertices:
        v, f = subdivide(v, f)
    return v, f


def load_image(path, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An RGB image file and its (3, 3) intrinsics -> the (1, 3, S, S) central square crop in [0, 1]
    (S the shorter side) and the crop's intrinsics (the principal point moved with the crop)."""
    import numpy as np
    from PIL import Image

    try:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable image ({e})") from e
    H, W = rgb.shape[:2]
    S = min(H, W)
    top, left = (H - S) // 2, (W - S) // 2
    image = torch.from_numpy(np.ascontiguousarray(rgb[top : top + S, left : left + S])).permute(2, 0, 1)[None]
    K = check_intrinsics(torch.as_tensor(K, dtype=torch.float32), 1)[0].clone()
    K[0, 2] -= left
    K[1, 2] -= top
    return image, K


def load_mesh(path, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A mesh file's (V, 3) vertices times ``scale`` (to metres) and (F, 3) triangles: OBJ read by
    :func:`miho.mesh.load_obj`, other formats (PLY, STL, OFF, GLB) by trimesh."""
    from pathlib import Path

    from miho.mesh import load_obj

    path = Path(path)
    if not path.exists():
        raise ValueError(f"no mesh at {path}")
    if path.suffix.lower() == ".obj":
        return load_obj(path, scale)
    try:
        import trimesh
    except ImportError as e:
        raise ValueError(f"reading {path.suffix} meshes needs trimesh (pip install trimesh); OBJ needs nothing") from e
    mesh = trimesh.load(path, force="mesh", process=False)
    if len(mesh.faces) == 0:
        raise ValueError(f"{path} holds no triangles")
    return scale * torch.as_tensor(mesh.vertices, dtype=torch.float32), torch.as_tensor(mesh.faces, dtype=torch.long)


def _check_inputs(images: torch.Tensor, K: torch.Tensor, objects: Meshes) -> torch.Tensor:
    check_tensor("images", images, (None, 3, None, None))
    B, device = images.shape[0], images.device
    if B == 0:
        raise ValueError("images is an empty batch")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be square (crop them about the hand and object), got {tuple(images.shape)}")
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("images must hold values in [0, 1]")
    K = check_intrinsics(K.to(device, torch.float32), B)
    if not isinstance(objects, Meshes) or objects.batch != B:
        got = objects.batch if isinstance(objects, Meshes) else type(objects).__name__
        raise ValueError(f"objects must be a miho.mesh.Meshes with one mesh an image ({B}), got {got}")
    if objects.verts.device != device:
        raise ValueError(f"objects are on {objects.verts.device}, images on {device}")
    return K


@torch.no_grad()
def coarse_estimate(images: torch.Tensor, K: torch.Tensor, objects: Meshes, honet: HoNet | None = None,
                    hand: HandModel | None = None) -> tuple[dict, Meshes]:  # fmt: skip
    """HoNet's stage alone (arguments as :func:`reconstruct`): the coarse estimate
    (``Reconstruction.coarse``) and the objects at HoNet's pose; with ObMan*'s weights
    (``load_honet(variant="obman")``), ObMan*'s answer."""
    K = _check_inputs(images, K, objects)
    honet = honet if honet is not None else load_honet(device=images.device)
    hand = hand if hand is not None else load_hand(device=images.device)
    img, P = resize_images(images, K, honet.config.image_size)
    out = honet.eval()(img, P)
    pose, shape, trans = honet.hand_params(hand, out)
    verts = honet.object_verts(out, objects.verts.float()) * objects.vert_mask[..., None]
    posed = Meshes(verts, objects.faces, objects.vert_mask, objects.face_mask)
    coarse = dict(hand_pose=pose, hand_shape=shape, hand_trans=trans, obj_rot=out.obj_rot, obj_trans=out.obj_trans,
                  hand_verts=hand(pose, shape, trans).vertices, obj_verts=posed.verts)  # fmt: skip
    return coarse, posed


def predict_field(images: torch.Tensor, K: torch.Tensor, coarse: dict, posed: Meshes, picr: PiCR | None = None,
                  hand: HandModel | None = None) -> CPF:  # fmt: skip
    """PiCR's stage: the field on the objects at HoNet's pose (``coarse`` and ``posed`` from
    :func:`coarse_estimate`); a hand-aware PiCR also reads HoNet's hand."""
    K = _check_inputs(images, K, posed)
    picr = picr if picr is not None else load_picr(device=images.device)
    feats = None
    if picr.config.hand_aware:
        hand = hand if hand is not None else load_hand(device=images.device)
        normals = vertex_normals(posed.verts, posed.faces, posed.face_mask)
        feats = CoarseHand(hand).features(coarse["hand_pose"], coarse["hand_shape"], coarse["hand_trans"], posed.verts,
                                          normals, posed.vert_mask)  # fmt: skip
    img, P = resize_images(images, K, picr.config.image_size)
    return picr.predict(img, posed.verts, P, posed.vert_mask, feats)


def estimate(images: torch.Tensor, K: torch.Tensor, objects: Meshes, honet: HoNet | None = None,
             picr: PiCR | None = None, hand: HandModel | None = None) -> tuple[dict, Meshes, CPF]:  # fmt: skip
    """The first two stages, HoNet and PiCR (arguments as :func:`reconstruct`): the coarse
    estimate (``Reconstruction.coarse``), the objects at HoNet's pose and PiCR's field on them."""
    hand = hand if hand is not None else load_hand(device=images.device)
    coarse, posed = coarse_estimate(images, K, objects, honet, hand)
    return coarse, posed, predict_field(images, K, coarse, posed, picr, hand)


def refine(coarse: dict, objects: Meshes, field: CPF, mode: str = "hand-object", hand: HandModel | None = None,
           t_vc: float = 0.5, iterations: int = 400, progress: bool = False,
           **geo_options) -> geo.GeOResult:  # fmt: skip
    """The third stage: GeO in ``mode`` (:data:`MODES`) from :func:`estimate`'s coarse hand, on its
    objects and field."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    hand = hand if hand is not None else load_hand(device=objects.verts.device)
    return geo.optimize(hand, coarse["hand_pose"], objects, field, shape=coarse["hand_shape"],
                        trans=coarse["hand_trans"], mode=mode, iterations=iterations, t_vc=t_vc, progress=progress,
                        **geo_options)  # fmt: skip


def reconstruct(
    images: torch.Tensor,
    K: torch.Tensor,
    objects: Meshes,
    mode: str = "hand-object",
    honet: HoNet | None = None,
    picr: PiCR | None = None,
    hand: HandModel | None = None,
    t_vc: float | None = None,
    iterations: int = 400,
    progress: bool = False,
    **geo_options,
) -> Reconstruction:
    """MIHO on a batch: HoNet, PiCR, GeO (see the module docstring; :func:`estimate` and
    :func:`refine` are its stages).

    Args:
        images: (B, 3, H, H) RGB in [0, 1]. K: (B, 3, 3) or (3, 3) intrinsics of the images, pixels.
        objects: the B objects' canonical meshes (:func:`user_object`, or SynthHO's), on the
            images' device.
        mode: GeO's mode, one of :data:`MODES`.
        honet, picr: the networks (default the committed ones: :func:`~miho.nets.honet.load_honet`,
            :func:`~miho.nets.picr.load_picr`), on the images' device; a hand-aware PiCR also reads
            HoNet's coarse hand.
        hand: the hand model HoNet predicts for (default ``load_hand()``, on the images' device).
        t_vc: GeO's vertex-contact threshold (default: the committed PiCR card's, chosen on ``val``).
        iterations: GeO iterations. geo_options: other :class:`~miho.geo.GeOConfig` fields.

    Raises:
        ValueError: images that are not square RGB batches in [0, 1], intrinsics with non-positive
        focal lengths, objects of another batch or device, an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    device = images.device
    picr = picr if picr is not None else load_picr(device=device)
    hand = hand if hand is not None else load_hand(device=device)
    if t_vc is None:
        t_vc = float(picr_card(variant=picr.config.variant)["threshold"])
    coarse, posed, field = estimate(images, K, objects, honet, picr, hand)
    refined = refine(coarse, posed, field, mode, hand, t_vc, iterations, progress, **geo_options)
    return Reconstruction(coarse, posed, field, refined)

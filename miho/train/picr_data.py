"""PiCR's data: a SynthHO split held in memory as tensors, batches assembled on any device, the
training-time disturbance of the object and the image augmentation.

:func:`build_picr_data` reads a split once (images rendered at the network's input size, through
the SynthHO image cache) and keeps, per sample, the image (uint8), the intrinsics, the object's
true pose and a fixed coarse pose (SynthHO's seeded :class:`~miho.data.synthho.Disturbance`,
used for evaluation), the hand's true and coarse parameters; per grasp, the ground-truth CPF; per
object, its canonical mesh. The result is cached in ``$MIHO_CACHE/picr`` under a fingerprint of
everything it depends on (library file, split, views, seed, size, renderer version).

:meth:`PiCRData.batch` assembles a batch of samples: the object's vertices in the camera frame
(padded, with a mask) under the true, the fixed coarse, or a given pose. Training draws a fresh
disturbance every step (:func:`disturb_objects`) and warps images (:func:`augment`): both take a
generator and draw for the whole batch, so a batch split over processes sees the same numbers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from miho import files
from miho.data.synthho import Disturbance, SynthHO, disturb_hands
from miho.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["AUGMENT_DRAWS", "Augment", "PiCRData", "augment", "build_picr_data", "check_image_size",
           "disturb_hand_params", "disturb_objects", "library_fingerprint", "scale_hand_disturbance"]  # fmt: skip

#: bump when the stored layout changes (invalidates cached files)
FORMAT = 2


def library_fingerprint(library_path: str | Path | None = None) -> str:
    """SHA-1 (12 hex digits) of the grasp library file (default: the committed one)."""
    from miho.data.grasps import DEFAULT_PATH

    return hashlib.sha1(Path(library_path or DEFAULT_PATH).read_bytes()).hexdigest()[:12]


@dataclass
class PiCRData:
    """A SynthHO split as tensors (see the module docstring). S samples, G grasps, O objects.

    images (S, 3, H, W) uint8; K (S, 3, 3) at the stored size; grasp (S,) row of the per-grasp
    tensors; obj_rot (S, 3, 3), obj_trans (S, 3) and their ``_noisy`` versions (canonical ->
    camera); hand_pose (S, 16, 3), hand_shape (S, n_shape), hand_trans (S, 3) and
    ``hand_pose_noisy``, ``hand_trans_noisy``; obj_of_grasp (G,); vc, ae (G, N) and cr (G, N) long
    (-1 on padding); obj_verts, obj_normals (O, N, 3) canonical, obj_count (O,); obj_faces (O, F, 3),
    face_count (O,); names: the O object names; info: split, views, seed, size, fingerprint.
    """

    images: torch.Tensor
    K: torch.Tensor
    grasp: torch.Tensor
    obj_rot: torch.Tensor
    obj_trans: torch.Tensor
    obj_rot_noisy: torch.Tensor
    obj_trans_noisy: torch.Tensor
    hand_pose: torch.Tensor
    hand_shape: torch.Tensor
    hand_trans: torch.Tensor
    hand_pose_noisy: torch.Tensor
    hand_trans_noisy: torch.Tensor
    obj_of_grasp: torch.Tensor
    vc: torch.Tensor
    cr: torch.Tensor
    ae: torch.Tensor
    obj_verts: torch.Tensor
    obj_normals: torch.Tensor
    obj_count: torch.Tensor
    obj_faces: torch.Tensor
    face_count: torch.Tensor
    names: list[str]
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.grasp.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, idx) -> "PiCRData":
        """The samples ``idx`` (a list, range or (k,) long tensor), with all grasps and objects."""
        idx = torch.as_tensor(list(idx) if not isinstance(idx, torch.Tensor) else idx, dtype=torch.long)
        per_sample = {k: getattr(self, k)[idx] for k in _PER_SAMPLE}
        rest = {k: getattr(self, k) for k in _SHARED}
        return PiCRData(**per_sample, **rest, names=self.names, info=dict(self.info, subset=len(idx)))

    def contact_fraction(self) -> float:
        """Fraction of the samples' real object vertices in contact (for the focal loss's alpha)."""
        g = self.grasp
        real = torch.arange(self.vc.shape[1]) < self.obj_count[self.obj_of_grasp[g]][:, None]
        return float((self.vc[g] > 0.5)[real].float().mean())

    def batch(self, idx: torch.Tensor, device="cpu", pose: str = "true", rot=None, trans=None) -> dict:
        """Samples ``idx`` ((b,) long) on ``device``: ``image`` (b, 3, H, W) float in [0, 1], ``K``,
        ``obj_verts`` (b, N, 3) and ``obj_normals`` in the camera frame under the ``pose`` "true" or
        "noisy" (or the given ``rot`` (b, 3, 3), ``trans`` (b, 3)), ``obj_canonical`` (b, N, 3) the
        same vertices in the object's own frame (0 on padding), ``obj_mask`` (b, N),
        ``obj_faces`` (b, F, 3), ``obj_face_mask``, ``vc``, ``cr``, ``ae`` (b, N), ``obj_rot`` and
        ``obj_trans`` (the pose used), ``obj_rot_noisy`` and ``obj_trans_noisy`` (the fixed coarse
        pose), and the hand's true and coarse parameters; everything float32."""
        idx = idx.long().cpu()
        g = self.grasp[idx]
        o = self.obj_of_grasp[g]
        n, nf = int(self.obj_count[o].max()), int(self.face_count[o].max())
        if rot is None:
            if pose not in ("true", "noisy"):
                raise ValueError(f"pose must be 'true' or 'noisy', got {pose!r}")
            sfx = "" if pose == "true" else "_noisy"
            rot, trans = getattr(self, "obj_rot" + sfx)[idx], getattr(self, "obj_trans" + sfx)[idx]
        rot, trans = rot.to(device, torch.float32), trans.to(device, torch.float32)
        canon = self.obj_verts[o, :n].to(device)
        out = dict(
            image=self.images[idx].to(device).float() / 255, K=self.K[idx].to(device),
            obj_verts=canon @ rot.transpose(1, 2) + trans[:, None], obj_canonical=canon,
            obj_normals=self.obj_normals[o, :n].to(device) @ rot.transpose(1, 2),
            obj_mask=(torch.arange(n) < self.obj_count[o][:, None]).to(device),
            obj_faces=self.obj_faces[o, :nf].to(device),
            obj_face_mask=(torch.arange(nf) < self.face_count[o][:, None]).to(device),
            vc=self.vc[g, :n].to(device), cr=self.cr[g, :n].to(device), ae=self.ae[g, :n].to(device),
            obj_rot=rot, obj_trans=trans,
            obj_rot_noisy=self.obj_rot_noisy[idx].to(device), obj_trans_noisy=self.obj_trans_noisy[idx].to(device),
        )  # fmt: skip
        for k in ("hand_pose", "hand_shape", "hand_trans", "hand_pose_noisy", "hand_trans_noisy"):
            out[k] = getattr(self, k)[idx].to(device)
        return out

    def save(self, path: str | Path) -> None:
        with files.atomic_write(path, suffix=".pt") as tmp:
            torch.save({k: getattr(self, k) for k in (*_PER_SAMPLE, *_SHARED, "names", "info")}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "PiCRData":
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            return cls(**d)
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
            raise ValueError(f"{path} is not a readable PiCR data file ({type(e).__name__}: {e}); delete it") from e


_PER_SAMPLE = ("images", "K", "grasp", "obj_rot", "obj_trans", "obj_rot_noisy", "obj_trans_noisy", "hand_pose",
               "hand_shape", "hand_trans", "hand_pose_noisy", "hand_trans_noisy")  # fmt: skip
_SHARED = ("obj_of_grasp", "vc", "cr", "ae", "obj_verts", "obj_normals", "obj_count", "obj_faces", "face_count")


def check_image_size(config, **datasets: "PiCRData | None") -> None:
    """``ValueError`` unless every given dataset (name=data; None skipped) holds images of the
    side a network's ``config`` reads (its ``image_size``)."""
    for name, d in datasets.items():
        if d is not None and d.image_size != config.image_size:
            raise ValueError(f"{name} has {d.image_size}-pixel images, the model's configuration "
                             f"{config.name!r} reads {config.image_size}")  # fmt: skip


def _pad(rows: list[torch.Tensor], fill) -> torch.Tensor:
    n = max(r.shape[0] for r in rows)
    return torch.stack([F.pad(r, (0, 0) * (r.dim() - 1) + (0, n - r.shape[0]), value=fill) for r in rows])


def build_picr_data(split: str, views: int = 8, size: int = 128, seed: int = 0, grasps: int | None = None,
                    workers: int = 2, cache: bool = True, progress: bool = True) -> PiCRData:  # fmt: skip
    """A SynthHO split as :class:`PiCRData`, images rendered at ``size`` pixels.

    Args:
        split: a SynthHO split ("train", "val", "test-seen", "test").
        views: camera views a grasp. size: image side. seed: SynthHO's seed (views, looks, the fixed
            disturbance). grasps: only the split's first ``grasps`` grasps (small sets for tests and
            the book). workers: DataLoader worker processes. cache: read / write ``$MIHO_CACHE/picr``.
    """
    from miho.data import render

    key = hashlib.sha1(
        f"{FORMAT}:{library_fingerprint()}:{split}:{views}:{size}:{seed}:{grasps}:{render.VERSION}".encode()
    ).hexdigest()[:16]
    path = files.cache_dir("picr") / f"{split}-{key}.pt"
    if cache and path.exists():
        return PiCRData.load(path)
    ds = SynthHO(split, views=views, seed=seed, size=size, disturb=Disturbance())
    if grasps is not None:
        ds.grasps = ds.grasps[:grasps]
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, multiprocessing_context="spawn" if workers else None
    )  # fork: may crash
    rows: dict[str, list] = {k: [] for k in _PER_SAMPLE}
    grasp_row: dict[int, int] = {}
    per_grasp: dict[str, list] = {"obj": [], "vc": [], "cr": [], "ae": []}
    names = sorted({ds.library.object[g] for g in ds.grasps})
    for s in tqdm(loader, total=len(ds), desc=f"PiCR data ({split})", disable=not progress):
        g = int(s["grasp"])
        if g not in grasp_row:
            grasp_row[g] = len(grasp_row)
            per_grasp["obj"].append(names.index(s["obj_name"]))
            for k in ("vc", "cr", "ae"):
                per_grasp[k].append(s[k].clone())  # a copy: a worker's shared tensor holds a file descriptor
        rows["grasp"].append(grasp_row[g])
        rows["images"].append((s["image"] * 255).round().to(torch.uint8))
        for k in _PER_SAMPLE[1:]:
            if k != "grasp":
                rows[k].append(s[k].clone())
    objs = [ds.objects[n] for n in names]
    data = PiCRData(
        images=torch.stack(rows["images"]), K=torch.stack(rows["K"]), grasp=torch.tensor(rows["grasp"]),
        **{k: torch.stack(rows[k]) for k in _PER_SAMPLE[3:]},
        obj_of_grasp=torch.tensor(per_grasp["obj"]), vc=_pad(per_grasp["vc"], 0.0), cr=_pad(per_grasp["cr"], -1),
        ae=_pad(per_grasp["ae"], 0.0), obj_verts=_pad([o.verts.float() for o in objs], 0.0),
        obj_normals=_pad([o.normals.float() for o in objs], 0.0), obj_count=torch.tensor([len(o.verts) for o in objs]),
        obj_faces=_pad([o.faces.long() for o in objs], 0), face_count=torch.tensor([len(o.faces) for o in objs]),
        names=names, info=dict(split=split, views=views, size=size, seed=seed, grasps=len(grasp_row),
                               library=library_fingerprint(), fingerprint=key,
                               hand=f"{ds.hand.name}, {ds.hand.num_vertices} vertices"),
    )  # fmt: skip
    if cache:
        data.save(path)
    return data


def disturb_objects(rot: torch.Tensor, trans: torch.Tensor, generator: torch.Generator,
                    disturbance: Disturbance | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Coarse object poses: (b, 3, 3), (b, 3) true poses -> disturbed ones (turned about the object's
    centre, moved; :meth:`Disturbance.draw` on ``generator``, which must be a CPU generator; default
    the official jitter ``Disturbance()``)."""
    d = (disturbance or Disturbance()).draw(rot.shape[0], generator)
    return (d["obj_rot"].to(rot) @ rot), trans + d["obj_offset"].to(trans)


def scale_hand_disturbance(pose: torch.Tensor, trans: torch.Tensor, pose_noisy: torch.Tensor,
                           trans_noisy: torch.Tensor, scale) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Coarse hands ``scale`` times as far from the true ones as the given coarse hands: the root's
    disturbing rotation (``R(noisy) R(true)^T``) scaled in angle, the joints' and translation's
    offsets scaled. (b, 16, 3), (b, 3) true and coarse -> (b, 16, 3), (b, 3); ``scale`` a number or
    (b,). Scale 0 gives the true hand, 1 the given coarse one, 2 a disturbance twice as large
    (:class:`~miho.data.synthho.Disturbance` scaled in angle and offset)."""
    k = torch.as_tensor(scale, dtype=pose.dtype, device=pose.device).expand(pose.shape[0])
    delta = axis_angle_to_matrix(pose_noisy[:, 0]) @ axis_angle_to_matrix(pose[:, 0]).transpose(1, 2)
    turn = axis_angle_to_matrix(matrix_to_axis_angle(delta) * k[:, None])
    root = matrix_to_axis_angle(turn @ axis_angle_to_matrix(pose[:, 0]))
    joints = pose[:, 1:] + k[:, None, None] * (pose_noisy[:, 1:] - pose[:, 1:])
    return torch.cat([root[:, None], joints], 1), trans + k[:, None] * (trans_noisy - trans)


def disturb_hand_params(pose: torch.Tensor, trans: torch.Tensor, generator: torch.Generator,
                        disturbance: Disturbance | None = None,
                        max_scale: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Coarse hands for training the hand-aware PiCR: (b, 16, 3), (b, 3) true -> coarse, each
    disturbed by ``disturbance`` (default the official jitter) scaled by ``max_scale`` u^2 (u uniform
    in [0, 1): median max_scale / 4, so most hands are near the usual jitter, some far off or exact
    and the network learns how far to trust the hand). Draws on the CPU ``generator``."""
    n = pose.shape[0]
    d = (disturbance or Disturbance()).draw(n, generator)
    k = max_scale * torch.rand(n, generator=generator, dtype=torch.float64) ** 2
    noisy, noisy_trans = disturb_hands(pose.double(), trans.double(), d)
    out = scale_hand_disturbance(pose.double(), trans.double(), noisy, noisy_trans, k)
    return out[0].to(pose.dtype), out[1].to(trans.dtype)


@dataclass(frozen=True)
class Augment:
    """Image augmentation: colour jitter (brightness, contrast, saturation factors uniform in
    1 +- the value) and an in-plane similarity about the image centre (rotation up to
    ``rotation`` degrees, scale 1 +- ``scale``, shift up to ``shift`` of the side), applied to the
    image and, through the projection, to the camera."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    rotation: float = 10.0
    scale: float = 0.1
    shift: float = 0.05


AUGMENT_DRAWS = 7  #: uniform numbers :func:`augment` uses a sample


def augment(image: torch.Tensor, P: torch.Tensor, draws: torch.Tensor,
            settings: Augment = Augment()) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Augmented (b, 3, S, S) images in [0, 1] and their (b, 3, 3) projections.

    ``draws`` is (b, :data:`AUGMENT_DRAWS`) uniform numbers in [0, 1) (drawn by the caller for the
    whole global batch, so that a slice of it augments as the whole batch would). A pixel p
    (centres at integer + 0.5) moves to A p with A = [s R | c + t - s R c], c the image centre;
    the new projection is A P, so projected vertices stay on the pixels they covered.
    """
    b, S = image.shape[0], image.shape[-1]
    u = draws.to(image)
    a = settings
    bright = 1 + a.brightness * (2 * u[:, 0] - 1)
    contrast = 1 + a.contrast * (2 * u[:, 1] - 1)
    sat = 1 + a.saturation * (2 * u[:, 2] - 1)
    angle = math.radians(a.rotation) * (2 * u[:, 3] - 1)
    scale = 1 + a.scale * (2 * u[:, 4] - 1)
    shift = a.shift * S * (2 * u[:, 5:7] - 1)
    x = image * bright[:, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * contrast[:, None, None, None] + mean
    grey = x.mean(1, keepdim=True)
    x = ((x - grey) * sat[:, None, None, None] + grey).clamp(0, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    M = scale[:, None, None] * torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    c = torch.full((b, 2), S / 2.0).to(image)
    A = torch.zeros(b, 3, 3).to(image)
    A[:, :2, :2] = M
    A[:, :2, 2] = c + shift - (M @ c[..., None])[..., 0]
    A[:, 2, 2] = 1
    # grid_sample's grid maps each output pixel to where it is read in the input: A^-1 in the
    # normalised coordinates q = 2 p / S - 1 (the same similarity, its shift scaled by 2 / S).
    Minv = torch.linalg.inv(M)
    theta = torch.cat([Minv, (-Minv @ (shift * (2.0 / S))[..., None])], -1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x, A @ P.to(image)

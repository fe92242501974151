"""SynthHO: the embedded default dataset, a torch Dataset over (grasp, view) samples.

A sample is grasp ``g`` of the grasp library seen by camera view ``k``: the camera is drawn by
:func:`miho.data.render.random_view` from a generator seeded by (seed, g, k), and everything is
returned in that camera's frame (OpenCV convention, metres):

* ``image`` (3, H, W) float in [0, 1], ``depth`` (H, W) metres (0: background), ``mask`` (H, W)
  long (0 background, 1 hand, 2 object), when ``images=True``; rendered on first use and cached
  on disk (a corrupt cache entry is rendered again);
* ``K`` (3, 3), ``cam_R`` (3, 3), ``cam_t`` (3,): intrinsics and the object-to-camera motion;
* ``hand_pose`` (16, 3) axis-angle (wrist in camera space), ``hand_shape`` (S,), ``hand_trans``
  (3,), ``hand_verts`` (V, 3), ``joints`` (21, 3), and their projections ``joints_2d`` (21, 2),
  ``hand_verts_2d`` (V, 2) with ``joints_in_image`` (21,) bool;
* ``obj_rot`` (3, 3), ``obj_trans`` (3,): the object's pose (canonical frame -> camera),
  ``obj_verts`` (N, 3), ``obj_normals`` (N, 3), ``obj_faces`` (F, 3), ``obj_verts_2d`` (N, 2),
  ``obj_name``, ``obj_index``;
* the ground-truth CPF on the object's vertices: ``vc`` (N,), ``cr`` (N,) long, ``ae`` (N,)
  (:func:`miho.cpf.annotate`; it does not depend on the view);
* with ``disturb``: ``hand_pose_noisy``, ``hand_trans_noisy``, ``obj_rot_noisy``,
  ``obj_trans_noisy``: the poses of a coarse estimate (see :class:`Disturbance`).

Splits (:func:`grasp_splits`): ``"test"`` holds every grasp of the library's held-out objects
(unseen objects); ``"val"`` every grasp of a fraction of the training objects, chosen by a hash
of their names; ``"test-seen"`` a few held-out grasps of each remaining training object (seen
objects, unseen grasps); ``"train"`` the rest. Objects differ in size: :func:`collate` pads them
(``obj_mask``).

Every sample is moved from the object's canonical frame into the camera's by one
:class:`miho.rotations.RigidMotion` (the camera's R, t), which also serves the real datasets
(:mod:`miho.data.real`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from miho import cpf, files
from miho.anchors import hand_regions
from miho.data import render as rnd
from miho.data.grasps import GraspLibrary, load_library
from miho.rotations import RigidMotion, axis_angle_to_matrix, matrix_to_axis_angle

#: SynthHO's splits (:func:`grasp_splits`).
SPLITS = ("train", "val", "test", "test-seen")


@dataclass(frozen=True)
class Disturbance:
    """Pose noise of a coarse estimate (official PiCR training jitter): a rotation about a random
    axis by up to ``max_angle`` radians (uniform) and a translation in a random direction of
    length N(``offset_mean``, ``offset_std``) metres, for the hand (about its wrist) and the
    object (about its centre) independently; every joint gets N(0, ``joint_std``) radians."""

    max_angle: float = math.pi / 24
    offset_mean: float = 0.010
    offset_std: float = 0.005
    joint_std: float = 0.0

    def draw(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``n`` draws, float64 on the generator's device: ``hand_rot`` (n, 3, 3), ``joint_noise``
        (n, 15, 3) radians, ``hand_offset`` (n, 3) m, ``obj_rot`` (n, 3, 3), ``obj_offset`` (n, 3) m.
        A coarse pose is the rotation applied after the true one and the offset added to the
        translation (the hand turns about its wrist, the object about its centre)."""
        g = generator
        out = {"hand_rot": _random_rotations(n, self.max_angle, g)}
        out["joint_noise"] = self.joint_std * torch.randn(n, 15, 3, generator=g, device=g.device, dtype=torch.float64)
        out["hand_offset"] = _random_offsets(n, self.offset_mean, self.offset_std, g)
        out["obj_rot"] = _random_rotations(n, self.max_angle, g)
        out["obj_offset"] = _random_offsets(n, self.offset_mean, self.offset_std, g)
        return out


def disturb_hands(pose: torch.Tensor, trans: torch.Tensor, draw: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse hands from true ones and a :meth:`Disturbance.draw`: (n, 16, 3) axis-angle poses and
    (n, 3) translations -> the pose turned about the root joint by ``hand_rot`` (which the
    translation leaves in place) with ``joint_noise`` added to the 15 joints, and the translation
    moved by ``hand_offset``; in the draw's dtype."""
    pose, trans = pose.to(draw["hand_rot"]), trans.to(draw["hand_rot"])
    root = matrix_to_axis_angle(draw["hand_rot"] @ axis_angle_to_matrix(pose[:, 0]))
    return torch.cat([root[:, None], pose[:, 1:] + draw["joint_noise"]], 1), trans + draw["hand_offset"]


def _seed(*parts) -> int:
    return int(hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _random_rotations(n: int, max_angle: float, g: torch.Generator) -> torch.Tensor:
    """(n, 3, 3): rotations about uniformly random axes by angles uniform in [0, max_angle]."""
    axis = torch.randn(n, 3, generator=g, device=g.device, dtype=torch.float64)
    angle = max_angle * torch.rand(n, generator=g, device=g.device, dtype=torch.float64)
    return axis_angle_to_matrix(axis / axis.norm(dim=-1, keepdim=True) * angle[:, None])


def _random_offsets(n: int, mean: float, std: float, g: torch.Generator) -> torch.Tensor:
    """(n, 3): uniformly random directions, lengths N(mean, std)."""
    d = torch.randn(n, 3, generator=g, device=g.device, dtype=torch.float64)
    length = mean + std * torch.randn(n, generator=g, device=g.device, dtype=torch.float64)
    return d / d.norm(dim=-1, keepdim=True) * length[:, None]


class SynthHO(torch.utils.data.Dataset):
    """(grasp, view) samples of the grasp library (see the module docstring).

    Splits (:func:`grasp_splits`; deterministic: decided by hashes of object names and grasp
    parameters, never by order or batch):

    * "test": every grasp of the library's held-out objects (unseen objects);
    * "val": every grasp of ``val_fraction`` of the training objects (chosen by name hashes);
    * "test-seen": of each other training object with n grasps, min(``seen_per_object``,
      n // 2) grasps chosen by their hashes (about 3 grasps an object: unseen grasps of seen
      objects), never used for training or validation;
    * "train": the remaining grasps of those objects; "all": every grasp.

    Args:
        split: "train", "val", "test" (unseen objects), "test-seen" (unseen grasps of training
            objects) or "all"; see :func:`grasp_splits`.
        views: camera views per grasp. seed: the views' and appearances' seed.
        hand: the hand model (default Anny). objects: the object library as a list of
            :class:`~miho.data.objects.ObjectMesh` (default: rebuilt from the library's names).
        library: a :class:`GraspLibrary` (default: the committed one).
        images: render images (else only geometry, fast). size: image side, pixels.
        cache_dir: image cache (default ``$MIHO_CACHE/images``, :func:`miho.files.cache_dir`;
            None when ``cache=False``).
        disturb: a :class:`Disturbance` to add noisy poses, or None.
        val_fraction: fraction of the training objects used for validation.
        seen_per_object: grasps held out of each training object for "test-seen".
    """

    def __init__(self, split: str = "train", views: int = 4, seed: int = 0, hand=None, objects=None,
                 library: GraspLibrary | None = None, images: bool = True, size: int = 256,
                 cache: bool = True, cache_dir: str | None = None, disturb: Disturbance | None = None,
                 val_fraction: float = 0.15, seen_per_object: int = 3) -> None:  # fmt: skip
        from miho.hand import load_hand

        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        self.hand = hand or load_hand()
        self.library = library or load_library()
        self.objects = {o.name: o for o in (objects if objects is not None else library_objects(self.library))}
        hashes = self.library.provenance["objects"]
        for name, h in hashes.items():
            if name in self.objects and self.objects[name].hash != h:
                raise ValueError(f"object {name!r} has hash {self.objects[name].hash}, the grasp library was made "
                                 f"on {h}: rebuild the library (`miho synth grasps`)")  # fmt: skip
        self.split, self.views, self.seed, self.images, self.size = split, views, seed, images, size
        self.cache_dir = (cache_dir or str(files.cache_dir("images"))) if cache else None
        self.disturb = disturb
        self.regions = hand_regions(self.hand)
        self._hand64 = copy.deepcopy(self.hand).double()
        splits = grasp_splits(self.library, val_fraction, seen_per_object)
        self.grasps = [i for i, g in enumerate(splits) if split in (g, "all")]
        self.object_names = sorted({self.library.object[i] for i in self.grasps})
        self._cpf: dict[int, cpf.CPF] = {}
        self._last: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return len(self.grasps) * self.views

    def index(self, i: int) -> tuple[int, int]:
        """(grasp index in the library, view) of sample ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range [0, {len(self)})")
        return self.grasps[i // self.views], i % self.views

    def grasp_geometry(self, g: int) -> dict:
        """Hand (pose, shape, trans, vertices, joints, and the closed surface that is drawn:
        vertices, faces, normals) and object of grasp ``g`` in the object's canonical frame,
        float64 (the last grasp's is kept: views of a grasp follow each other)."""
        if self._last is not None and self._last[0] == g:
            return self._last[1]
        from miho.mesh import vertex_normals

        lib = self.library
        hand = self._hand64
        pose, shape, trans = lib.pose[g : g + 1].double(), lib.shape[g : g + 1].double(), lib.trans[g : g + 1].double()
        with torch.no_grad():
            out = hand(pose, shape, trans)
        obj = self.objects[lib.object[g]]
        cv, cf = hand.closed(out.vertices)  # drawn closed: no hole at the wrist
        geo = dict(pose=pose[0], shape=shape[0], trans=trans[0], verts=out.vertices[0], joints=out.joints21[0],
                   obj=obj, surface=(cv[0].numpy(), cf.numpy(), vertex_normals(cv, cf[None])[0].numpy()))  # fmt: skip
        self._last = (g, geo)
        return geo

    def annotation(self, g: int) -> cpf.CPF:
        """Ground-truth CPF (batch of one) of grasp ``g`` on its object's vertices (view
        independent), memoised."""
        if g not in self._cpf:
            geo = self.grasp_geometry(g)
            obj = geo["obj"]
            with torch.no_grad():
                field = cpf.annotate(geo["verts"][None].to(self.hand.dtype), obj.verts[None].to(self.hand.dtype),
                                     self.regions)  # fmt: skip
            self._cpf[g] = field
        return self._cpf[g]

    def camera(self, g: int, view: int, geo: dict | None = None) -> rnd.Camera:
        """The camera of (grasp ``g``, ``view``) (``geo``: :meth:`grasp_geometry` if at hand)."""
        geo = geo or self.grasp_geometry(g)
        pts = torch.cat((geo["verts"], geo["obj"].verts.double())).numpy()
        return rnd.random_view(pts, np.random.default_rng(_seed("view", self.seed, g, view)), size=self.size)

    def image_path(self, g: int, view: int) -> str | None:
        """Cache file of the image of (grasp ``g``, ``view``): named by a hash of everything the
        image depends on (seed, size, object, hand parameters, view). None without a cache."""
        if not self.cache_dir:
            return None
        lib = self.library
        params = (getattr(lib, k)[g].numpy().tobytes().hex() for k in ("pose", "shape", "trans"))
        obj = self.objects[lib.object[g]]
        key = _seed("image", rnd.VERSION, self.seed, self.size, obj.name, obj.hash, *params, view)
        return os.path.join(self.cache_dir, f"{key:012x}.npz")

    def _image(self, g: int, view: int, geo: dict, camera: rnd.Camera) -> dict:
        path = self.image_path(g, view)
        if path and os.path.exists(path):
            try:
                with np.load(path) as z:
                    img = {k: z[k] for k in ("rgb", "depth", "mask")}
                if img["rgb"].shape == (self.size, self.size, 3):
                    return img
            except (OSError, ValueError, KeyError, EOFError):
                pass  # corrupt entry: render again
        obj = geo["obj"]
        app = rnd.random_appearance(np.random.default_rng(_seed("look", self.seed, g, view)))
        mesh = (obj.verts.double().numpy(), obj.faces.numpy(), obj.normals.double().numpy())
        img = rnd.render(geo["surface"], mesh, camera, app)
        if path:
            files.atomic_savez(path, img)
        return img

    def __getitem__(self, i: int) -> dict:
        g, view = self.index(i)
        geo = self.grasp_geometry(g)
        cam = self.camera(g, view, geo)
        to_camera = RigidMotion(torch.from_numpy(cam.R), torch.from_numpy(cam.t))
        R, t = to_camera.R, to_camera.t
        obj = geo["obj"]
        hv, joints = to_camera.points(geo["verts"]), to_camera.points(geo["joints"])
        pose, trans = to_camera.hand(self._hand64, geo["pose"][None], geo["shape"][None], geo["trans"][None])
        pose, trans = pose[0], trans[0]
        ov = to_camera.points(obj.verts.double())
        K = torch.from_numpy(cam.K)

        def project(x):
            return (x @ K.T)[:, :2] / x[:, 2:3]

        j2 = project(joints)
        field = self.annotation(g)
        f32 = torch.float32
        s = dict(
            K=K.to(f32), cam_R=R.to(f32), cam_t=t.to(f32),
            hand_pose=pose.to(f32), hand_shape=geo["shape"].to(f32), hand_trans=trans.to(f32),
            hand_verts=hv.to(f32), joints=joints.to(f32), joints_2d=j2.to(f32), hand_verts_2d=project(hv).to(f32),
            joints_in_image=((j2 >= 0) & (j2 < self.size)).all(-1),
            obj_rot=R.to(f32), obj_trans=t.to(f32), obj_verts=ov.to(f32),
            obj_normals=to_camera.directions(obj.normals.double()).to(f32),
            obj_faces=obj.faces, obj_verts_2d=project(ov).to(f32), obj_name=obj.name,
            obj_index=sorted(self.objects).index(obj.name),
            vc=field.vc[0].to(f32), cr=field.cr[0], ae=field.ae[0].to(f32),
            grasp=g, view=view,
        )  # fmt: skip
        if self.disturb is not None:
            gen = torch.Generator("cpu").manual_seed(_seed("disturb", self.seed, g, view))
            draw = self.disturb.draw(1, gen)
            noisy, noisy_trans = disturb_hands(pose[None], trans[None], draw)
            d = {k: v[0] for k, v in draw.items()}
            s["hand_pose_noisy"] = noisy[0].to(f32)
            s["hand_trans_noisy"] = noisy_trans[0].to(f32)
            s["obj_rot_noisy"] = (d["obj_rot"] @ R).to(f32)
            s["obj_trans_noisy"] = (t + d["obj_offset"]).to(f32)  # about its centre
        if self.images:
            img = self._image(g, view, geo, cam)
            s["image"] = torch.from_numpy(img["rgb"]).permute(2, 0, 1).to(f32) / 255
            s["depth"] = torch.from_numpy(img["depth"])
            s["mask"] = torch.from_numpy(img["mask"]).long()
        return s


def object_split(name: str, library: GraspLibrary, val_fraction: float = 0.15) -> str:
    """ "test" for the library's held-out objects; else "val" for a hash-chosen fraction of the
    training objects, "train" for the rest (whose grasps :func:`grasp_splits` splits further)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    if library.provenance["splits"][name] == "test":
        return "test"
    h = int(hashlib.sha1(f"val:{name}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def grasp_key(library: GraspLibrary, g: int) -> int:
    """A hash of grasp ``g`` of ``library``: its object's name and its hand parameters (float32
    bytes), so the same grasp has the same key in any library order."""
    params = (getattr(library, k)[g].float().numpy().astype("<f4").tobytes().hex() for k in ("pose", "shape", "trans"))
    return _seed("grasp", library.object[g], *params)


def grasp_splits(library: GraspLibrary, val_fraction: float = 0.15, seen_per_object: int = 3) -> list[str]:
    """The split of every grasp of ``library``, a list of :data:`SPLITS` names:

    * "test": the grasps of the library's held-out objects (unseen objects);
    * "val": the grasps of the training objects that :func:`object_split` puts in validation;
    * "test-seen": of each other training object with n grasps, the min(``seen_per_object``,
      n // 2) grasps of smallest :func:`grasp_key` (unseen grasps of seen objects; at least
      half of an object's grasps stay in training);
    * "train": the rest.

    Decided by hashes of names and grasp parameters: the same library in any order gives every
    grasp the same split.
    """
    if int(seen_per_object) != seen_per_object or seen_per_object < 0:
        raise ValueError(f"seen_per_object must be an integer >= 0, got {seen_per_object!r}")
    by_object: dict[str, str] = {}
    out = []
    for name in library.object:
        if name not in by_object:
            by_object[name] = object_split(name, library, val_fraction)
        out.append(by_object[name])
    members: dict[str, list[int]] = {}
    for g, name in enumerate(library.object):
        if by_object[name] == "train":
            members.setdefault(name, []).append(g)
    for idx in members.values():
        for g in sorted(idx, key=lambda i: grasp_key(library, i))[: min(int(seen_per_object), len(idx) // 2)]:
            out[g] = "test-seen"
    return out


def library_objects(library: GraspLibrary) -> list:
    """The prepared objects that ``library`` was made on (rebuilt from their sources)."""
    from miho.data.objects import load_objects

    return load_objects(sorted(library.provenance["objects"]))


def collate(samples: list[dict]) -> dict:
    """Stack samples; objects (verts, normals, faces, 2D, CPF) are padded to the largest, with
    ``obj_mask`` (B, N) and ``obj_face_mask`` (B, F); names stay lists."""
    out = {}
    ragged = {"obj_verts", "obj_normals", "obj_verts_2d", "vc", "cr", "ae", "obj_faces"}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        if k in ragged:
            n = max(v.shape[0] for v in vals)
            fill = -1 if k == "cr" else 0
            out[k] = torch.stack([torch.nn.functional.pad(v, (0, 0) * (v.dim() - 1) + (0, n - v.shape[0]), value=fill)
                                  for v in vals])  # fmt: skip
        elif isinstance(vals[0], torch.Tensor):
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], (int, float)):
            out[k] = torch.tensor(vals)
        else:
            out[k] = vals
    n = out["obj_verts"].shape[1]
    out["obj_mask"] = torch.stack([torch.arange(n) < s["obj_verts"].shape[0] for s in samples])
    nf = out["obj_faces"].shape[1]
    out["obj_face_mask"] = torch.stack([torch.arange(nf) < s["obj_faces"].shape[0] for s in samples])
    return out


__all__ = [
    "SPLITS",
    "Disturbance",
    "SynthHO",
    "collate",
    "disturb_hands",
    "grasp_key",
    "grasp_splits",
    "library_objects",
    "object_split",
]

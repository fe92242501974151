"""The library of graspable rigid objects (paper §6.1's role, for the synthetic default set).

Sources: procedural household shapes (surfaces of revolution: bottle, cup, can, vase, cone;
boxes; a ball; a torus) and meshes that pybullet_data ships (its 1000 procedurally generated
``random_urdfs``, the duck, the bunny, the teddy). Every object is

* welded (duplicated vertices merged) and made **closed** (every edge shared by two faces): an
  open mesh (pybullet's mug, for instance) is remeshed from its generalised winding number
  (:func:`miho.mesh.remesh_watertight`), and rejected with a clear error when that changes its
  volume by more than 10 % (thin parts lost);
* scaled so that its longest bounding-box side lies in ``[size_min, size_max]`` (5-20 cm);
* centred at its volume centroid, outward-oriented, with vertex normals;
* subdivided until it has at least ``min_vertices`` vertices (about 1-4k);
* identified by a content hash of its final vertices and faces;
* decomposed into convex parts by VHACD (:func:`miho.simulation.decompose`: shipped with the
  package for the grasp library's objects, else computed on demand and cached on disk).

Splits are by object (no shape is shared between training and test): a fixed fraction of the
objects, chosen by a hash of their names, is held out.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass

import torch

from miho.mesh import (
    box,
    icosphere,
    is_closed,
    load_obj,
    remesh_watertight,
    subdivide,
    vertex_normals,
    volume_and_centroid,
    weld,
)

SIZE_MIN, SIZE_MAX = 0.05, 0.20  # longest bounding-box side, metres


@dataclass
class ObjectMesh:
    """One prepared object. verts (N, 3) metres, centred; faces (F, 3); normals (N, 3)."""

    name: str
    source: str
    verts: torch.Tensor
    faces: torch.Tensor
    normals: torch.Tensor
    hash: str
    split: str = "train"

    @property
    def size(self) -> float:
        """Longest bounding-box side, metres."""
        return float((self.verts.max(0).values - self.verts.min(0).values).max())

    def convex_decomposition(self, cache_dir=None) -> str:
        """Path of the object's VHACD decomposition (an OBJ of convex parts) under the default
        simulation settings: the shipped one, else computed once and cached under its content
        hash (:func:`miho.simulation.decompose`; computing needs pybullet)."""
        from miho.simulation import SimSettings, decompose, vhacd_cache_dir

        return decompose(self.verts.double().numpy(), self.faces.numpy(), SimSettings(),
                         vhacd_cache_dir() if cache_dir is None else cache_dir)  # fmt: skip


def prepare(
    name: str,
    verts: torch.Tensor,
    faces: torch.Tensor,
    source: str,
    size_min: float = SIZE_MIN,
    size_max: float = SIZE_MAX,
    min_vertices: int = 1000,
) -> ObjectMesh:
    """Weld, check closed, scale into the size range, centre, orient, subdivide, hash.

    Raises:
        ValueError: the mesh is not closed (watertight), or degenerate (no volume).
    """
    verts, faces = weld(verts.float(), faces.long(), tol=1e-7)
    if not is_closed(faces):
        raise ValueError(f"object {name!r} ({source}) is not a closed (watertight) mesh")
    size = float((verts.max(0).values - verts.min(0).values).max())
    if size <= 0:
        raise ValueError(f"object {name!r} ({source}) is degenerate")
    verts = verts * (min(max(size, size_min), size_max) / size)
    vol, centroid = volume_and_centroid(verts, faces)
    if abs(vol) < 1e-9:
        raise ValueError(f"object {name!r} ({source}) has no volume")
    if vol < 0:
        faces = faces[:, [0, 2, 1]]
    verts = verts - centroid
    while verts.shape[0] < min_vertices:
        verts, faces = subdivide(verts, faces)
    normals = vertex_normals(verts[None], faces[None])[0]
    h = hashlib.sha1(torch.round(verts * 1e6).int().numpy().tobytes() + faces.int().numpy().tobytes())
    return ObjectMesh(name, source, verts, faces, normals, h.hexdigest()[:16])


# ---------------------------------------------------------------------- procedural shapes
def revolve(profile, segments: int = 48, points: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed surface of revolution about z of a polyline ``profile`` [(r, z), ...] that starts
    and ends on the axis (r = 0); the polyline is resampled to ``points`` points evenly spaced
    along its length."""
    p = torch.tensor(profile, dtype=torch.float64)
    if p[0, 0] != 0 or p[-1, 0] != 0:
        raise ValueError("a revolved profile must start and end on the axis (r = 0)")
    seg = (p[1:] - p[:-1]).norm(dim=1)
    s = torch.cat((torch.zeros(1, dtype=p.dtype), seg.cumsum(0)))
    t = torch.linspace(0, float(s[-1]), points, dtype=p.dtype)
    idx = torch.searchsorted(s, t, right=True).clamp(1, len(p) - 1)
    w = ((t - s[idx - 1]) / seg[idx - 1].clamp_min(1e-12))[:, None]
    q = p[idx - 1] + w * (p[idx] - p[idx - 1])
    q[0], q[-1] = p[0], p[-1]
    ang = torch.arange(segments, dtype=p.dtype) * 2 * math.pi / segments
    rings = [torch.stack((r * torch.cos(ang), r * torch.sin(ang), z.expand(segments)), 1) for r, z in q[1:-1]]
    verts = torch.cat([torch.tensor([[0.0, 0.0, float(q[0, 1])]], dtype=p.dtype), *rings,
                       torch.tensor([[0.0, 0.0, float(q[-1, 1])]], dtype=p.dtype)])  # fmt: skip
    S, K = segments, len(rings)
    faces = [(0, 1 + (k + 1) % S, 1 + k) for k in range(S)]
    for i in range(K - 1):
        for k in range(S):
            a, b = 1 + i * S + k, 1 + i * S + (k + 1) % S
            faces += [(a, b, b + S), (a, b + S, a + S)]
    top, last = len(verts) - 1, 1 + (K - 1) * S
    faces += [(last + k, last + (k + 1) % S, top) for k in range(S)]
    return verts.float(), torch.tensor(faces, dtype=torch.long)


def torus(major: float = 0.04, minor: float = 0.012, segments: int = 48, sides: int = 20):
    """A closed torus about z."""
    u = torch.arange(segments, dtype=torch.float64) * 2 * math.pi / segments
    v = torch.arange(sides, dtype=torch.float64) * 2 * math.pi / sides
    U, V = torch.meshgrid(u, v, indexing="ij")
    r = major + minor * torch.cos(V)
    verts = torch.stack((r * torch.cos(U), r * torch.sin(U), minor * torch.sin(V)), -1).reshape(-1, 3)
    faces = []
    for i in range(segments):
        for j in range(sides):
            a, b = i * sides + j, ((i + 1) % segments) * sides + j
            c, d = ((i + 1) % segments) * sides + (j + 1) % sides, i * sides + (j + 1) % sides
            faces += [(a, b, c), (a, c, d)]
    return verts.float(), torch.tensor(faces, dtype=torch.long)


#: Procedural household objects: name -> mesh builder (metres).
PROCEDURAL = {
    "bottle": lambda: revolve([(0, 0), (0.035, 0), (0.035, 0.14), (0.014, 0.18), (0.013, 0.22), (0, 0.22)]),
    "wine_bottle": lambda: revolve([(0, 0), (0.038, 0), (0.038, 0.17), (0.014, 0.22), (0.012, 0.29), (0, 0.29)]),
    "can": lambda: revolve([(0, 0), (0.033, 0), (0.033, 0.12), (0, 0.12)]),
    "thin_can": lambda: revolve([(0, 0), (0.026, 0), (0.026, 0.14), (0, 0.14)]),
    "cup": lambda: revolve([(0, 0), (0.032, 0), (0.042, 0.10), (0.038, 0.10), (0.028, 0.006), (0, 0.006)], points=60),
    "bowl": lambda: revolve([(0, 0), (0.03, 0), (0.07, 0.05), (0.065, 0.05), (0.027, 0.006), (0, 0.006)], points=60),
    "vase": lambda: revolve([(0, 0), (0.03, 0), (0.045, 0.06), (0.025, 0.13), (0.035, 0.16), (0, 0.16)]),
    "cone": lambda: revolve([(0, 0), (0.04, 0), (0, 0.10)]),
    "ball": lambda: icosphere(0.035, 4),
    "big_ball": lambda: icosphere(0.05, 4),
    "cube": lambda: box((0.06, 0.06, 0.06), 12),
    "cereal_box": lambda: box((0.05, 0.14, 0.19), 12),
    "brick": lambda: box((0.05, 0.10, 0.04), 12),
    "torus": torus,
}

#: pybullet_data meshes outside random_urdfs: name -> (file, URDF scale).
PYBULLET_MESHES = {
    "mug": ("objects/mug.obj", 1.0),
    "duck": ("duck_vhacd.obj", 0.05),
    "pybullet_torus": ("torus/torus_textured.obj", 1.0),
    "domino": ("domino/domino.obj", 1.0),
    "stone": ("stone.obj", 1.0),
    "toy_prism": ("toys/prism.obj", 1.0),
    "toy_cylinder": ("toys/cylinder.obj", 1.0),
    "toy_concave_box": ("toys/concave_box.obj", 1.0),
    "toy_shape_sorter": ("toys/shape_sorter.obj", 1.0),
    "bunny": ("bunny.obj", 1.0),
    "teddy": ("teddy2_VHACD_CHs.obj", 0.1),
}


def _urdf_scale(path: str) -> float:
    with open(path) as fh:
        m = re.search(r'scale="([0-9.eE+-]+)', fh.read())
    return float(m.group(1)) if m else 1.0


def pybullet_mesh(name: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(verts, faces, source) of a pybullet_data mesh: a name of :data:`PYBULLET_MESHES` or
    ``random_NNN`` (one of the 1000 random_urdfs, with its URDF's scale)."""
    import pybullet_data

    root = pybullet_data.getDataPath()
    if name.startswith("random_"):
        n = name.removeprefix("random_")
        base = os.path.join(root, "random_urdfs", n)
        if not os.path.isdir(base):
            raise ValueError(f"unknown pybullet random object {name!r}")
        v, f = load_obj(os.path.join(base, f"{n}.obj"), scale=_urdf_scale(os.path.join(base, f"{n}.urdf")))
        return v, f, f"pybullet_data/random_urdfs/{n}"
    if name not in PYBULLET_MESHES:
        raise ValueError(f"unknown pybullet object {name!r}; choose from {sorted(PYBULLET_MESHES)} or random_NNN")
    file, scale = PYBULLET_MESHES[name]
    v, f = load_obj(os.path.join(root, file), scale=scale)
    return v, f, f"pybullet_data/{file}"


def _split(name: str, test_fraction: float) -> str:
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


def make_watertight(name: str, verts: torch.Tensor, faces: torch.Tensor, max_volume_change: float = 0.1):
    """``(verts, faces)`` unchanged when closed, else remeshed by
    :func:`miho.mesh.remesh_watertight`, which must keep the volume (the generalised winding
    number's, i.e. the signed volume of the open surface) within ``max_volume_change``.

    Raises:
        ValueError: the remeshed volume differs more (thin parts lost): the object is unusable.
    """
    v, f = weld(verts.float(), faces.long(), tol=1e-7)
    if len(f) < 4:
        raise ValueError(f"object {name!r} is degenerate: {len(f)} faces left after merging duplicate vertices")
    if is_closed(f):
        return v, f, False
    rv, rf = remesh_watertight(v, f)
    before, after = abs(volume_and_centroid(v, f)[0]), abs(volume_and_centroid(rv, rf)[0])
    if before <= 0 or abs(after / before - 1) > max_volume_change:
        raise ValueError(f"object {name!r} is not a closed (watertight) mesh and remeshing it changes its volume "
                         f"from {before * 1e6:.1f} to {after * 1e6:.1f} cm^3 (thin parts lost)")  # fmt: skip
    return rv, rf, True


def make_object(name: str, test_fraction: float = 0.2) -> ObjectMesh:
    """Prepare one object by name: a key of :data:`PROCEDURAL` or :data:`PYBULLET_MESHES`, or
    ``random_NNN``; open meshes are remeshed (:func:`make_watertight`). Raises ValueError for an
    unknown name or a mesh that cannot be prepared."""
    if name in PROCEDURAL:
        v, f, src = (*PROCEDURAL[name](), "procedural")
    else:
        v, f, src = pybullet_mesh(name)
    v, f, remeshed = make_watertight(name, v, f)
    obj = prepare(name, v, f, src + (" (remeshed watertight)" if remeshed else ""))
    obj.split = _split(name, test_fraction)
    return obj


def load_objects(names, test_fraction: float = 0.2) -> list[ObjectMesh]:
    """:func:`make_object` for each name (errors name the object)."""
    return [make_object(n, test_fraction) for n in names]


def object_library(random_objects: int = 300, test_fraction: float = 0.2, skip_invalid: bool = True):
    """The prepared objects: all procedural ones, the pybullet meshes and the first
    ``random_objects`` random_urdfs. Objects that cannot be prepared (not closed) are skipped
    when ``skip_invalid`` (their errors are returned), else raise.

    Returns:
        (list of :class:`ObjectMesh`, dict name -> error message for the skipped ones).
    """
    names = list(PROCEDURAL) + list(PYBULLET_MESHES) + [f"random_{i:03d}" for i in range(random_objects)]
    objects, errors = [], {}
    for name in names:
        try:
            objects.append(make_object(name, test_fraction))
        except ValueError as e:
            if not skip_invalid:
                raise
            errors[name] = str(e)
    return objects, errors

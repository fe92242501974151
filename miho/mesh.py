"""Batched triangle meshes of different sizes (objects), padded, and a few procedural shapes.

A :class:`Meshes` batch holds B meshes padded to the largest vertex and face counts; masks say
which entries are real. Padded faces point at vertex 0 and are masked out wherever faces are
summed over, so every batched kernel treats each mesh as if it were alone. Metres.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from miho.checks import check_device, check_faces, check_mask, check_tensor


def gather_triangles(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Corner positions of every face, for a batch.

    Args:
        verts: (B, N, 3). faces: (B, F, 3) long indices into each sample's vertices.

    Returns:
        (B, F, 3, 3): ``out[b, f, k]`` is ``verts[b, faces[b, f, k]]``.
    """
    B, F = faces.shape[:2]
    return torch.gather(verts, 1, faces.reshape(B, F * 3, 1).expand(-1, -1, 3)).reshape(B, F, 3, 3)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor, face_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Area-weighted unit vertex normals.

    Args:
        verts: (B, N, 3). faces: (B, F, 3) long. face_mask: (B, F) bool or None (all real).

    Returns:
        (B, N, 3); a vertex on no real face gets a zero normal.
    """
    tri = gather_triangles(verts, faces)
    fn = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])  # 2 * area * n
    if face_mask is not None:
        fn = fn * face_mask[..., None]
    n = torch.zeros_like(verts)
    for k in range(3):
        n = n.scatter_add(1, faces[:, :, k, None].expand(-1, -1, 3), fn)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@dataclass
class Meshes:
    """B triangle meshes padded to common sizes.

    verts: (B, N, 3) floating, metres. faces: (B, F, 3) integer (stored as long). vert_mask:
    (B, N) bool. face_mask: (B, F) bool. Every mesh has at least one real vertex and one real
    face, every face indexes [0, N) and every real face only real vertices; a batch may be
    empty (B = 0). The constructor raises ``ValueError`` (naming the field) otherwise.
    """

    verts: torch.Tensor
    faces: torch.Tensor
    vert_mask: torch.Tensor
    face_mask: torch.Tensor

    def __post_init__(self) -> None:
        check_tensor("verts", self.verts, (None, None, 3))
        B, N = self.verts.shape[:2]
        if B > 0 and N == 0:
            raise ValueError("verts hold no vertex (N = 0): every mesh needs at least one")
        check_faces("faces", self.faces, N, batch=B, allow_empty=B == 0)
        F = self.faces.shape[1]
        check_mask("vert_mask", self.vert_mask, (B, N))
        check_mask("face_mask", self.face_mask, (B, F))
        for name in ("faces", "vert_mask", "face_mask"):
            check_device(name, getattr(self, name), self.verts.device, "verts")
        self.faces = self.faces.long()
        if B == 0 or self.verts.device.type == "meta":
            return
        real_faces = self.vert_mask.gather(1, self.faces.reshape(B, -1)).view(B, F, 3).all(-1)
        flags = torch.stack((~self.vert_mask.any(1), ~self.face_mask.any(1), (self.face_mask & ~real_faces).any(1)))
        no_vert, no_face, padded_corner = flags.tolist()
        for problem, bad in (("no real vertex (vert_mask is all False)", no_vert),
                             ("no real face (face_mask is all False)", no_face),
                             ("a real face on a padded vertex (vert_mask False)", padded_corner)):  # fmt: skip
            if any(bad):
                raise ValueError(f"mesh {bad.index(True)} of the batch has {problem}")

    @classmethod
    def from_list(cls, meshes, device=None, dtype=torch.float32) -> "Meshes":
        """From a list of (verts (Ni, 3) floating, faces (Fi, 3) integer) tensors or arrays, each
        with Ni >= 1 and Fi >= 1; an empty list gives an empty batch (B = N = F = 0)."""
        if not isinstance(meshes, (list, tuple)):
            raise ValueError(f"meshes must be a list of (verts, faces) pairs, got {type(meshes).__name__}")
        vs, fs = [], []
        for i, pair in enumerate(meshes):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"meshes[{i}] must be a (verts, faces) pair")
            v, f = (torch.as_tensor(x, device=device) for x in pair)
            check_tensor(f"meshes[{i}] verts", v, (None, 3))
            if v.shape[0] == 0:
                raise ValueError(f"meshes[{i}] verts hold no vertex")
            check_faces(f"meshes[{i}] faces", f, v.shape[0])
            vs.append(v.to(dtype))
            fs.append(f.long())
        B = len(vs)
        N, F = max((v.shape[0] for v in vs), default=0), max((f.shape[0] for f in fs), default=0)
        verts = torch.zeros(B, N, 3, dtype=dtype, device=device)
        faces = torch.zeros(B, F, 3, dtype=torch.long, device=device)
        vm = torch.zeros(B, N, dtype=torch.bool, device=device)
        fm = torch.zeros(B, F, dtype=torch.bool, device=device)
        for i, (v, f) in enumerate(zip(vs, fs)):
            verts[i, : len(v)], faces[i, : len(f)] = v, f
            vm[i, : len(v)], fm[i, : len(f)] = True, True
        return cls(verts, faces, vm, fm)

    @property
    def batch(self) -> int:
        return self.verts.shape[0]

    def mesh(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mesh ``b`` of the batch without its padding: verts (Nb, 3) and faces (Fb, 3) long,
        renumbered to index those vertices (in their order in the batch)."""
        if isinstance(b, bool) or not isinstance(b, (int, numbers.Integral)):
            raise ValueError(f"b must be an int, got {type(b).__name__}")
        b = int(b)
        if not -self.batch <= b < self.batch:
            raise ValueError(f"b must be in [{-self.batch}, {self.batch}), got {b!r}")
        vm, fm = self.vert_mask[b], self.face_mask[b]
        faces = self.faces[b][fm]
        if bool(vm.all()):
            return self.verts[b], faces
        remap = torch.cumsum(vm.long(), 0) - 1
        return self.verts[b][vm], remap[faces]

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3) lowest and (B, 3) highest coordinates of each mesh's real vertices, metres."""
        if self.verts.shape[1] == 0:  # only an empty batch has no vertex
            return self.verts.new_zeros(0, 3), self.verts.new_zeros(0, 3)
        big = torch.finfo(self.verts.dtype).max
        lo = self.verts.masked_fill(~self.vert_mask[..., None], big).amin(1)
        hi = self.verts.masked_fill(~self.vert_mask[..., None], -big).amax(1)
        return lo, hi

    def normals(self) -> torch.Tensor:
        """(B, N, 3) area-weighted unit vertex normals (zero on padding)."""
        return vertex_normals(self.verts, self.faces, self.face_mask) * self.vert_mask[..., None]

    def triangles(self) -> torch.Tensor:
        """(B, F, 3, 3) corner positions of every face (padding: three copies of vertex 0)."""
        return gather_triangles(self.verts, self.faces)

    def signed_volumes(self) -> torch.Tensor:
        """(B,) enclosed volume of each mesh, m^3, signed by orientation (divergence theorem over
        the real faces): positive when the faces are counter-clockwise seen from outside (normals
        point out), negative when they face inwards. Exact for closed meshes."""
        centre = (self.verts * self.vert_mask[..., None]).sum(1) / self.vert_mask.sum(1, keepdim=True).clamp_min(1)
        t = self.triangles() - centre[:, None, None]
        v = (t[:, :, 0] * torch.linalg.cross(t[:, :, 1], t[:, :, 2], dim=-1)).sum(-1) / 6
        return (v * self.face_mask).sum(1)

    def closed(self) -> torch.Tensor:
        """(B,) bool: is each mesh closed and consistently oriented once vertices with identical
        coordinates are merged (:func:`weld`, then :func:`is_closed`), for the whole batch at
        once. A mesh without faces is not closed."""
        (B, N), F = self.verts.shape[:2], self.faces.shape[1]
        dev = self.verts.device
        sample = torch.arange(B, device=dev).repeat_interleave(N)[:, None].to(self.verts.dtype)
        ids = row_ids(torch.cat((sample, self.verts.reshape(-1, 3)), 1))
        f = torch.gather(ids.view(B, N), 1, self.faces.reshape(B, F * 3)).view(B, F, 3)  # welded, batch-unique
        keep = self.face_mask & (f[..., 0] != f[..., 1]) & (f[..., 1] != f[..., 2]) & (f[..., 2] != f[..., 0])
        owner = torch.arange(B, device=dev)[:, None].expand_as(keep)[keep].repeat(3)
        f = f[keep]
        e = torch.cat((f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]))
        key, rev = e[:, 0] * (B * N) + e[:, 1], e[:, 1] * (B * N) + e[:, 0]
        open_ = torch.zeros(B, dtype=torch.bool, device=dev)
        if key.numel():
            key_sorted, order = torch.sort(key)
            repeated = key_sorted[1:] == key_sorted[:-1]
            open_[owner[order[1:][repeated]]] = True
            pos = torch.searchsorted(key_sorted, rev).clamp(max=key.numel() - 1)
            open_[owner[key_sorted[pos] != rev]] = True
        return keep.any(1) & ~open_

    def with_verts(self, verts: torch.Tensor) -> "Meshes":
        """The same topology with new (B, N, 3) vertices (e.g. after a rigid motion)."""
        check_tensor("verts", verts, tuple(self.verts.shape))
        return Meshes(verts, self.faces, self.vert_mask, self.face_mask)

    def to(self, device=None, dtype=None) -> "Meshes":
        return Meshes(self.verts.to(device, dtype), self.faces.to(device), self.vert_mask.to(device),
                      self.face_mask.to(device))  # fmt: skip

    def __getitem__(self, idx) -> "Meshes":
        """Sub-batch (keeps the padding)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return Meshes(self.verts[idx], self.faces[idx], self.vert_mask[idx], self.face_mask[idx])


def check_meshes(name: str, meshes, batch: int | None = None, device: torch.device | None = None) -> None:
    """Raise ``ValueError`` unless ``meshes`` is a :class:`Meshes` batch of ``batch`` meshes (None:
    any) on ``device`` (None: any) with finite vertices (the fields of a batch can be replaced
    after it was made, so they are looked at again)."""
    if not isinstance(meshes, Meshes):
        raise ValueError(f"{name} must be a miho.mesh.Meshes batch, got {type(meshes).__name__}")
    if batch is not None and meshes.batch != batch:
        raise ValueError(f"{name} hold {meshes.batch} meshes but the batch has {batch}")
    check_tensor(f"{name}.verts", meshes.verts, (None, None, 3))
    if device is not None:
        check_device(name, meshes.verts, device, "the other inputs")


def row_ids(rows: torch.Tensor) -> torch.Tensor:
    """(M,) long: the same id for equal rows of ``rows`` (M, K), ids 0.. in lexicographic order of
    the rows (``torch.unique(rows, dim=0, return_inverse=True)[1]``, by K stable 1-D sorts,
    several times faster)."""
    order = torch.arange(rows.shape[0], device=rows.device)
    for c in range(rows.shape[1] - 1, -1, -1):
        order = order[torch.argsort(rows[order, c], stable=True)]
    s = rows[order]
    new = torch.ones(rows.shape[0], dtype=torch.long, device=rows.device)
    new[1:] = (s[1:] != s[:-1]).any(1)
    ids = torch.empty_like(order)
    ids[order] = torch.cumsum(new, 0) - 1
    return ids


def weld(verts: torch.Tensor, faces: torch.Tensor, tol: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The same surface with vertices closer than ``tol`` metres (0: identical coordinates, e.g.
    duplicated along texture seams) merged, collapsed faces dropped and unused vertices removed:
    (V', 3) vertices and (F', 3) faces."""
    key = torch.round(verts.double() / tol).long() if tol > 0 else verts
    inverse = row_ids(key)
    first = torch.full((int(inverse.max()) + 1,), len(verts), dtype=torch.long, device=verts.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(verts), device=verts.device), reduce="amin")
    f = inverse[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    used, remap = torch.unique(f, return_inverse=True)
    return verts[first][used], remap


def volume_and_centroid(verts: torch.Tensor, faces: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Signed volume (m^3, positive for outward faces) and solid centroid (3,) of a closed mesh,
    (V, 3), (F, 3): sums over the tetrahedra each face makes with the origin (in float64)."""
    tri = verts.double()[faces]
    v6 = (tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2])).sum(-1)  # 6 x signed tetra volumes
    vol = v6.sum() / 6
    centroid = (v6[:, None] * tri.sum(1)).sum(0) / (24 * vol)
    return float(vol), centroid.to(verts.dtype)


def is_closed(faces: torch.Tensor) -> bool:
    """True when every directed edge (a, b) of the faces has exactly one opposite edge (b, a)
    and none is repeated: a closed, consistently oriented (watertight) surface."""
    if faces.numel() == 0:
        return False
    e = torch.cat((faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]))
    n = int(faces.max()) + 1
    key, rev = e[:, 0] * n + e[:, 1], e[:, 1] * n + e[:, 0]
    key_sorted, _ = torch.sort(key)
    if bool((key_sorted[1:] == key_sorted[:-1]).any()):
        return False
    pos = torch.searchsorted(key_sorted, rev).clamp(max=key.numel() - 1)
    return bool((key_sorted[pos] == rev).all())


# ---------------------------------------------------------------------- procedural shapes
def icosphere(radius: float = 0.04, subdivisions: int = 3, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Sphere of ``radius`` metres: (V, 3) vertices, (F, 3) outward faces (V = 10 * 4^s + 2)."""
    t = (1 + math.sqrt(5)) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
         (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
         (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    verts = [torch.tensor(p, dtype=torch.float64) for p in v]
    verts = [p / p.norm() for p in verts]
    faces = f
    for _ in range(subdivisions):
        mid, new = {}, []

        def midpoint(a, b, mid=mid):
            key = (min(a, b), max(a, b))
            if key not in mid:
                p = verts[a] + verts[b]
                verts.append(p / p.norm())
                mid[key] = len(verts) - 1
            return mid[key]

        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return (radius * torch.stack(verts)).to(dtype), torch.tensor(faces, dtype=torch.long)


def cylinder(
    radius: float = 0.035, height: float = 0.12, segments: int = 48, rings: int = 24, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed cylinder along z, centred at the origin, with ``rings`` vertex rings on its side
    and capped ends (each cap a fan of rings around its centre). Outward faces."""
    ang = torch.arange(segments, dtype=torch.float64) * 2 * math.pi / segments
    circle = torch.stack((torch.cos(ang), torch.sin(ang)), -1) * radius
    zs = torch.linspace(-height / 2, height / 2, rings + 1, dtype=torch.float64)
    side = torch.cat([torch.cat((circle, torch.full((segments, 1), float(z), dtype=torch.float64)), 1) for z in zs])
    caps_r = [radius * k / 4 for k in (3, 2, 1)]
    verts = [side]
    faces = []
    S = segments
    for r in range(rings):  # side quads
        for s in range(S):
            a, b = r * S + s, r * S + (s + 1) % S
            c, d = a + S, b + S
            faces += [(a, b, d), (a, d, c)]
    n = side.shape[0]
    for z, ring0, up in ((-height / 2, 0, False), (height / 2, rings * S, True)):
        prev = ring0
        for cr in caps_r:
            ring = torch.cat((circle * cr / radius, torch.full((S, 1), z, dtype=torch.float64)), 1)
            verts.append(ring)
            for s in range(S):
                a, b = prev + s, prev + (s + 1) % S
                c, d = n + s, n + (s + 1) % S
                faces += [(a, b, d), (a, d, c)] if up else [(a, d, b), (a, c, d)]
            prev, n = n, n + S
        verts.append(torch.tensor([[0.0, 0.0, z]], dtype=torch.float64))
        for s in range(S):
            a, b = prev + s, prev + (s + 1) % S
            faces.append((a, b, n) if up else (a, n, b))
        n += 1
    return torch.cat(verts).to(dtype), torch.tensor(faces, dtype=torch.long)


def box(size=(0.06, 0.06, 0.06), divisions: int = 8, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed box of ``size`` metres centred at the origin, each face a ``divisions`` grid."""
    d = divisions
    verts, faces, index = [], [], {}

    def vid(p):
        key = tuple(round(x, 9) for x in p)
        if key not in index:
            index[key] = len(verts)
            verts.append(p)
        return index[key]

    half = [s / 2 for s in size]
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u_ax, v_ax = [a for a in range(3) if a != axis]
            grid = {}
            for i in range(d + 1):
                for j in range(d + 1):
                    p = [0.0, 0.0, 0.0]
                    p[axis] = sign * half[axis]
                    p[u_ax] = -half[u_ax] + size[u_ax] * i / d
                    p[v_ax] = -half[v_ax] + size[v_ax] * j / d
                    grid[i, j] = vid(p)
            for i in range(d):
                for j in range(d):
                    a, b, c, e = grid[i, j], grid[i + 1, j], grid[i + 1, j + 1], grid[i, j + 1]
                    faces += [(a, b, c), (a, c, e)]
    v, f = torch.tensor(verts, dtype=torch.float64), torch.tensor(faces, dtype=torch.long)
    tri = v[f]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = (normal * tri.mean(1)).sum(-1) < 0  # convex and centred: outward normals point away
    f[inward] = f[inward][:, [0, 2, 1]]
    return v.to(dtype), f


def load_obj(path, scale: float = 1.0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices (V, 3) times ``scale`` and triangles (F, 3) of a Wavefront OBJ file (polygons are
    fanned into triangles; texture and normal indices are ignored)."""
    verts, faces = [], []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                verts.append([float(x) for x in parts[1:4]])
            elif parts[0] == "f":
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]  # 1-based or negative
                faces += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
    if not verts or not faces:
        raise ValueError(f"{path}: no vertices or faces found")
    return scale * torch.tensor(verts, dtype=dtype), torch.tensor(faces, dtype=torch.long)


def save_obj(path, verts: torch.Tensor, faces: torch.Tensor) -> None:
    """Write (V, 3) vertices (metres, as they are) and (F, 3) triangles as a Wavefront OBJ,
    atomically (the reverse of :func:`load_obj`)."""
    from miho import files

    check_tensor("verts", verts, (None, 3))
    check_faces("faces", faces, verts.shape[0])
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts.detach().cpu().double().tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.detach().cpu().tolist()]
    with files.atomic_write(path, suffix=".obj") as tmp:
        with open(tmp, "w") as fh:
            fh.write("\n".join(lines) + "\n")


def subdivide(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoint subdivision: every triangle into four (shape unchanged, 4x the faces)."""
    e = torch.cat((faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]])).sort(1).values
    edges, inverse = torch.unique(e, dim=0, return_inverse=True)
    mid = verts.shape[0] + inverse.reshape(3, -1).T  # (F, 3): midpoints of edges 01, 12, 20
    a, b, c = faces.unbind(1)
    ab, bc, ca = mid.unbind(1)
    new_faces = torch.cat([torch.stack(t, 1) for t in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))])
    return torch.cat((verts, verts[edges].mean(1))), new_faces


# ---------------------------------------------------------------------- watertight remeshing
#: The 6 tetrahedra of a cube around its main diagonal (corner c = x + 2y + 4z): for each order
#: of the axes, corners 0, e_a, e_a + e_b, 7. Neighbouring cubes split their shared faces alike,
#: so the tetrahedra tile space consistently and the extracted surface has no cracks.
_KUHN = tuple((0, 1 << a, (1 << a) | (1 << b), 7) for a, b in ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)))


def marching_tetrahedra(values, origin, step) -> tuple[torch.Tensor, torch.Tensor]:
    """The surface ``values = 0`` of a sampled scalar field (positive inside) as a closed,
    outward-oriented triangle mesh.

    Args:
        values: (X, Y, Z) samples at ``origin + step * (i, j, k)`` (no exact zeros). origin, step: (3,).

    Returns:
        verts (N, 3) float64 and faces (F, 3) long; each vertex lies on a grid edge, linearly
        interpolated where the field crosses 0.
    """
    s = torch.as_tensor(values, dtype=torch.float64)
    X, Y, Z = s.shape
    idx = torch.arange(X * Y * Z).reshape(X, Y, Z)
    corners = torch.stack([idx[(c & 1) : X - 1 + (c & 1), (c >> 1 & 1) : Y - 1 + (c >> 1 & 1),
                               (c >> 2) : Z - 1 + (c >> 2)].reshape(-1) for c in range(8)], 1)  # fmt: skip
    tets = torch.cat([corners[:, list(t)] for t in _KUHN])  # (T, 4) grid point ids
    flat = s.reshape(-1)
    inside = flat[tets] > 0
    count = inside.sum(1)
    # Sort each tet's corners so the inside ones come first (stable: keeps the tet's orientation
    # irrelevant, triangles are oriented geometrically below).
    order = torch.argsort((~inside).int(), dim=1, stable=True)
    t = torch.gather(tets, 1, order)
    tris = []
    one = t[count == 1]  # inside a, outside b c d: edges ab ac ad
    tris.append(torch.stack((one[:, [0, 1]], one[:, [0, 2]], one[:, [0, 3]]), 1))
    three = t[count == 3]  # inside a b c, outside d: edges ad bd cd
    tris.append(torch.stack((three[:, [0, 3]], three[:, [1, 3]], three[:, [2, 3]]), 1))
    two = t[count == 2]  # inside a b, outside c d: the quad ac, ad, bd, bc
    quad = torch.stack((two[:, [0, 2]], two[:, [0, 3]], two[:, [1, 3]], two[:, [1, 2]]), 1)
    tris += [quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]]
    edges = torch.cat(tris)  # (F, 3, 2): each triangle corner is a grid edge (inside id, outside id)
    n = flat.numel()
    key = edges[..., 0] * n + edges[..., 1]
    uniq, face = torch.unique(key.reshape(-1), return_inverse=True)
    a, b = uniq // n, uniq % n
    grid = torch.stack(torch.meshgrid(*(torch.arange(k, dtype=torch.float64) for k in (X, Y, Z)), indexing="ij"), -1)
    pts = torch.as_tensor(origin, dtype=torch.float64) + grid.reshape(-1, 3) * torch.as_tensor(
        step, dtype=torch.float64
    )
    w = (flat[a] / (flat[a] - flat[b]))[:, None]
    verts = pts[a] + w * (pts[b] - pts[a])
    face = face.reshape(-1, 3)
    # Orient every triangle outwards: its normal must point from its inside grid points to its outside ones.
    normal = torch.linalg.cross(verts[face[:, 1]] - verts[face[:, 0]], verts[face[:, 2]] - verts[face[:, 0]])
    out_dir = (pts[edges[..., 1]] - pts[edges[..., 0]]).sum(1)
    flip = (normal * out_dir).sum(-1) < 0
    face = torch.where(flip[:, None], face[:, [0, 2, 1]], face)
    return verts, face


def remesh_watertight(
    verts: torch.Tensor, faces: torch.Tensor, max_vertices: int = 4000, resolutions=(40, 32, 28, 24, 20, 16)
) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed version of a mesh that may have holes or open seams.

    For each grid resolution in turn (cells along the longest side, finest first), the
    generalised winding number is sampled on the grid and its 1/2 level set extracted by
    :func:`marching_tetrahedra`; the surface is coarsened by clustering its vertices on grids of
    1, 1.5 and 2 cells (:func:`weld`). The first result that is closed (:func:`is_closed`) and
    has at most ``max_vertices`` vertices is returned. Details thinner than a cell may be lost.

    Returns:
        verts (N, 3) in the input dtype and faces (F, 3) of a closed, outward-oriented mesh.

    Raises:
        ValueError: no resolution gave a closed mesh within ``max_vertices``.
    """
    from miho.geometry import winding_number

    v = verts.double()
    lo, hi = v.min(0).values, v.max(0).values
    tris = v[faces][None]
    for res in resolutions:
        step = float((hi - lo).max()) / res
        origin = lo - 1.5 * step
        dims = [int(math.ceil(float(e) / step)) + 4 for e in (hi - lo)]
        grid = torch.stack(torch.meshgrid(*(torch.arange(k, dtype=torch.float64) for k in dims), indexing="ij"), -1)
        w = winding_number((origin + step * grid.reshape(-1, 3))[None], tris)[0].abs()
        field = (w - 0.5).reshape(dims)
        field = torch.where(field == 0, torch.full_like(field, 1e-9), field)
        mv, mf = marching_tetrahedra(field, origin, torch.full((3,), step, dtype=torch.float64))
        for cv, cf in [(mv, mf)] + [weld(mv, mf, k * step) for k in (1.0, 1.5, 2.0)]:
            if cv.shape[0] <= max_vertices and cf.shape[0] >= 4 and is_closed(cf):
                return cv.to(verts.dtype), cf
    raise ValueError(f"no closed remeshing with at most {max_vertices} vertices at resolutions {resolutions}")

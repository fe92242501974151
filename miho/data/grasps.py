"""The grasp library: hands synthesised around the object library (Supp C.2) and filtered.

For each object, candidate starts are placed around its tightest bounding cuboid: the palm faces
one of the cuboid's six faces (direction jittered), the fingers run across or along the face, and
the hand opens more or less (:data:`GRASP_TYPES`). GeO then closes every candidate of a batch
together in the grasp-synthesis setting (:data:`miho.geo.GRASP_SYNTHESIS`: attraction of Hasson et
al., repulsion, L_anat; hand only). A candidate is **accepted** when

* PD < 5 mm and SIV < 2 cm^3 (:mod:`miho.metrics`, the closed hand, 80^3 voxels);
* the thumb's and at least two other fingertip regions come within 5 mm of the surface;
* SD < 20 mm: the ObMan protocol (:mod:`miho.simulation`) in one run on the unmoved hand
  (:data:`LIBRARY_SIMULATION`, how the committed library was filtered); its gravity points along the
  camera's y axis, which is a random direction relative to the grasp, so each candidate draws a
  uniformly random gravity direction (stored with the grasp).

Grasps are stored as parameters in the object's canonical frame (the object's pose is the
identity there): hand pose (16, 3) axis-angle, shape, translation, object name, grasp type and
the filter scores, with provenance (seed, settings, object hashes, package versions), in one
``.npz``. :func:`build_library` writes the library batch by batch, atomically, and resumes an
interrupted build from its partial file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from miho import geo, metrics
from miho.anchors import TIP_REGIONS, hand_regions
from miho.files import atomic_savez
from miho.geometry import point_triangle_distance
from miho.hand.model import HandModel
from miho.mesh import Meshes
from miho.simulation import SimSettings, simulation_displacement
from miho.synthesis import approach_pose

#: Grasp types: starting curl (fraction of the bend limits), palm-surface gap (m), and whether
#: the fingers run across the cuboid face's longer side (wrapping around it) or along it.
GRASP_TYPES = {
    "wrap": dict(curl=0.2, gap=0.005, across=True),
    "side": dict(curl=0.2, gap=0.008, across=False),
    "pinch": dict(curl=0.45, gap=0.02, across=True),
}
THUMB_TIP = TIP_REGIONS[-1]  # region 14, the thumb's distal phalanx


@dataclass(frozen=True)
class GraspFilters:
    """Acceptance thresholds (Supp C.2 and the dataset issue) and the acceptance test itself
    (:meth:`passes`)."""

    max_pd: float = 5.0  # mm
    max_siv: float = 2.0  # cm^3
    tip_distance: float = 5.0  # mm, a fingertip region "touches" within this distance
    min_other_tips: int = 2  # besides the thumb
    max_sd: float = 20.0  # mm

    def passes(self, pd: torch.Tensor, siv: torch.Tensor, tips: torch.Tensor,
               sd: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """Each filter's verdict on B grasps, (B,) bool, in the order the filters apply: "PD",
        "SIV", "contact" (the thumb's and at least ``min_other_tips`` other fingertip regions
        within ``tip_distance``) and, when ``sd`` is given, "SD" (NaN, not simulated, fails). A
        grasp is accepted when every verdict is True.

        Args:
            pd: (B,) mm. siv: (B,) cm^3. tips: (B, 5) mm, fingertip regions in
                :data:`~miho.anchors.TIP_REGIONS` order (thumb last). sd: (B,) mm or None.

        Raises:
            ValueError: shapes that do not match.
        """
        B = pd.shape[0] if pd.dim() == 1 else -1
        if B < 0 or siv.shape != (B,) or tips.shape != (B, len(TIP_REGIONS)):
            raise ValueError(f"pd, siv and tips must have shapes (B,), (B,), (B, {len(TIP_REGIONS)}); got "
                             f"{tuple(pd.shape)}, {tuple(siv.shape)}, {tuple(tips.shape)}")  # fmt: skip
        if sd is not None and sd.shape != (B,):
            raise ValueError(f"sd must have shape ({B},), got {tuple(sd.shape)}")
        touching = tips < self.tip_distance
        out = {"PD": pd < self.max_pd, "SIV": siv < self.max_siv,
               "contact": touching[:, -1] & (touching[:, :-1].sum(1) >= self.min_other_tips)}  # fmt: skip
        if sd is not None:
            out["SD"] = sd < self.max_sd  # NaN compares False
        return out


#: The simulation of the library's SD filter: the ObMan protocol's physics in one run on the
#: unmoved hand (:mod:`miho.simulation` defaults to the mean of jittered runs).
LIBRARY_SIMULATION = SimSettings(jitter_runs=0)


@dataclass(frozen=True)
class SynthesisSettings:
    """How candidates are made: jitter of the approach (rad), of the roll (rad), hand shapes
    uniform in +-``shape_range``, GeO iterations."""

    approach_jitter: float = 0.25
    roll_jitter: float = 0.3
    shape_range: float = 0.5
    iterations: int = 200
    filters: GraspFilters = field(default_factory=GraspFilters)


def bounding_cuboid(verts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tightest bounding cuboid of a point set among two candidate frames (the object's own axes
    and its principal axes): rotation (3, 3) with the cuboid's axes as columns sorted by extent
    (longest first), centre (3,) and half extents (3,), metres."""
    best = None
    for axes in (torch.eye(3, dtype=verts.dtype), torch.linalg.eigh(torch.cov(verts.T))[1]):
        local = verts @ axes
        lo, hi = local.min(0).values, local.max(0).values
        vol = float((hi - lo).prod())
        if best is None or vol < best[0] - 1e-12:
            best = (vol, axes, lo, hi)
    _, axes, lo, hi = best
    order = torch.argsort(hi - lo, descending=True)
    axes, lo, hi = axes[:, order], lo[order], hi[order]
    if torch.det(axes) < 0:
        axes = axes * torch.tensor([1.0, 1.0, -1.0], dtype=axes.dtype)
        lo, hi = lo * torch.tensor([1, 1, -1.0]), hi * torch.tensor([1, 1, -1.0])
        lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
    return axes, axes @ ((lo + hi) / 2), (hi - lo) / 2


def _jitter(d: torch.Tensor, angle: float, g: torch.Generator) -> torch.Tensor:
    """Unit vectors (N, 3) tilted from ``d`` by up to ``angle`` radians in a random direction."""
    side = torch.randn(d.shape, generator=g, device=g.device, dtype=d.dtype)
    side = side - (side * d).sum(-1, keepdim=True) * d
    side = side / side.norm(dim=-1, keepdim=True)
    t = angle * torch.rand(d.shape[0], 1, generator=g, device=g.device, dtype=d.dtype)
    return torch.cos(t) * d + torch.sin(t) * side


def candidate_start(verts: torch.Tensor, num_shape: int, settings: SynthesisSettings, seed: int) -> dict:
    """One candidate start around an object (canonical frame, verts (N, 3) metres), drawn from
    its own generator so that a candidate does not depend on which others are made with it.

    Returns a dict of approach (3,) and fingers (3,) unit vectors, roll () radians, kind ()
    index into :data:`GRASP_TYPES`, shape (S,) and gravity (3,) a unit direction.
    """
    g = torch.Generator("cpu").manual_seed(seed)
    axes, _, _ = bounding_cuboid(verts.double())
    face = int(torch.randint(0, 6, (), generator=g, device=g.device))
    axis, sign = face // 2, 1.0 - 2.0 * (face % 2)
    kind = int(torch.randint(0, len(GRASP_TYPES), (), generator=g, device=g.device))
    across = list(GRASP_TYPES.values())[kind]["across"]
    longer, shorter = [a for a in range(3) if a != axis]  # in-face axes, longer first
    flip = 1.0 - 2.0 * float(torch.randint(0, 2, (), generator=g, device=g.device))
    approach = _jitter(sign * axes[:, axis][None], settings.approach_jitter, g)[0]
    roll = settings.roll_jitter * (2 * float(torch.rand((), generator=g, device=g.device, dtype=torch.float64)) - 1)
    shape = settings.shape_range * (2 * torch.rand(num_shape, generator=g, device=g.device, dtype=torch.float64) - 1)
    gravity = torch.randn(3, generator=g, device=g.device, dtype=torch.float64)
    return dict(approach=approach, fingers=flip * axes[:, shorter if across else longer],
                roll=torch.tensor(roll, dtype=torch.float64), kind=torch.tensor(kind), shape=shape,
                gravity=gravity / gravity.norm())  # fmt: skip


def tip_distances(hand: HandModel, hand_verts: torch.Tensor, objects: Meshes) -> torch.Tensor:
    """(B, 5) distance (mm) of each fingertip region (:data:`TIP_REGIONS`, index .. thumb) to
    its object's surface: the smallest over the region's vertices."""
    regions = hand_regions(hand)
    labels, tips = regions.labels.to(hand_verts.device), regions.tip_mask.to(hand_verts.device)
    d, _ = point_triangle_distance(hand_verts[:, tips], objects.triangles().to(hand_verts.dtype), objects.face_mask)
    lab = labels[tips]
    return torch.stack([d[:, lab == r].amin(1) for r in TIP_REGIONS], 1) * 1000.0


def score_grasps(
    hand: HandModel,
    pose: torch.Tensor,
    shape: torch.Tensor,
    trans: torch.Tensor,
    objects: Meshes,
    gravity: torch.Tensor,
    filters: GraspFilters = GraspFilters(),
    simulate: bool = True,
    sim_options: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Scores and acceptance of B grasps (object frame): PD (mm), SIV (cm^3), tip distances
    (B, 5) mm, SD (mm, only for candidates that pass the others; NaN elsewhere) and ``accepted``
    (:meth:`GraspFilters.passes`; with ``simulate=False``: passing the geometric filters, SD
    left NaN).

    Args:
        gravity: (B, 3) unit directions of gravity for the simulation.
        sim_options: keyword arguments of :func:`miho.simulation.simulation_displacement`
            (default settings: :data:`LIBRARY_SIMULATION`).
    """
    with torch.no_grad():
        verts = hand(pose, shape, trans).vertices
        cv, cf = hand.closed(verts)
        pd = metrics.penetration_depth(verts, objects).double().cpu()
        siv = metrics.solid_intersection_volume(cv, cf, objects).double().cpu()
        tips = tip_distances(hand, verts, objects).double().cpu()
    geometric = torch.stack(list(filters.passes(pd, siv, tips).values())).all(0)
    sd = torch.full_like(pd, float("nan"))
    idx = geometric.nonzero()[:, 0].tolist()
    if simulate and idx:
        real = [objects.mesh(i) for i in idx]
        out = simulation_displacement(
            cv[idx].cpu().double().numpy(),
            cf.cpu().numpy(),
            [v.cpu().double().numpy() for v, _ in real],
            [f.cpu().numpy() for _, f in real],
            gravity=(9.8 * gravity[idx]).cpu().double().numpy(),
            **{"progress": False, "settings": LIBRARY_SIMULATION, **(sim_options or {})},
        )
        sd[idx] = torch.as_tensor(out, dtype=sd.dtype)
    ok = torch.stack(list(filters.passes(pd, siv, tips, sd if simulate else None).values())).all(0)
    return dict(pd=pd, siv=siv, tips=tips, sd=sd, accepted=ok)


def start_poses(hand: HandModel, objs: list, seeds: list[int], settings: SynthesisSettings):
    """The open hands that candidates start from (:func:`candidate_start` + :func:`approach_pose`).

    Returns:
        objects (:class:`Meshes` of ``objs``), pose (B, 16, 3), trans (B, 3), shape (B, S) and
        the stacked starts (approach, fingers, roll, kind, shape, gravity).
    """
    st = [candidate_start(o.verts, hand.num_shape, settings, s) for o, s in zip(objs, seeds)]
    st = {k: torch.stack([c[k] for c in st]) for k in st[0]}
    dev, dt = hand.device, hand.dtype
    B = len(objs)
    objects = Meshes.from_list([(o.verts, o.faces) for o in objs], device=dev, dtype=dt)
    shape = st["shape"].to(dev, dt)
    pose = torch.zeros(B, 16, 3, device=dev, dtype=dt)
    trans = torch.zeros(B, 3, device=dev, dtype=dt)
    for k, t in enumerate(GRASP_TYPES.values()):
        sel = (st["kind"] == k).nonzero()[:, 0]
        if len(sel) == 0:
            continue
        p, tr = approach_pose(
            hand, objects[sel], st["approach"][sel].to(dev, dt), st["roll"][sel].to(dev, dt), curl=t["curl"],
            gap=t["gap"], finger_dir=st["fingers"][sel].to(dev, dt), shape=shape[sel], inside="normal",
        )  # fmt: skip
        pose[sel.to(dev)], trans[sel.to(dev)] = p, tr
    return objects, pose, trans, shape, st


#: GeO settings of grasp synthesis: :data:`miho.geo.GRASP_SYNTHESIS` with the cheap nearest-vertex
#: inside test (the filters use exact ones afterwards).
SYNTHESIS_GEO = {**geo.GRASP_SYNTHESIS, "obman_inside": "normal"}


def synthesize_batch(hand: HandModel, objs: list, seeds: list[int], settings: SynthesisSettings,
                     sim_options: dict | None = None) -> dict:  # fmt: skip
    """Make and score one batch of candidates, candidate i around object ``objs[i]`` (an
    :class:`~miho.data.objects.ObjectMesh`) from start :func:`candidate_start` with ``seeds[i]``.
    A candidate's result does not depend on the rest of the batch.

    Returns a dict of per-candidate tensors: pose, shape, trans, approach, gravity, kind and the
    scores of :func:`score_grasps`.
    """
    objects, pose, trans, shape, st = start_poses(hand, objs, seeds, settings)
    dev, dt = hand.device, hand.dtype
    res = geo.optimize(hand, pose, objects, shape=shape, trans=trans, iterations=settings.iterations, **SYNTHESIS_GEO)
    gravity = st["gravity"].to(dev, dt)
    scores = score_grasps(hand, res.pose, res.shape, res.trans, objects, gravity, settings.filters,
                          sim_options=sim_options)  # fmt: skip
    return dict(pose=res.pose.cpu().float(), shape=res.shape.cpu().float(), trans=res.trans.cpu().float(),
                approach=st["approach"].float(), gravity=st["gravity"].float(), kind=st["kind"], **scores)  # fmt: skip


# ---------------------------------------------------------------------- the library on disk
_TENSORS = ("pose", "shape", "trans", "approach", "gravity", "pd", "siv", "tips", "sd")


@dataclass
class GraspLibrary:
    """Accepted grasps (N of them) in their objects' canonical frames (object pose: identity).

    pose (N, 16, 3) axis-angle, shape (N, S), trans (N, 3) metres, object (N,) names, kind (N,)
    grasp type names, approach (N, 3) and gravity (N, 3) unit vectors, pd (N,) mm, siv (N,)
    cm^3, tips (N, 5) mm (index, middle, little, ring, thumb), sd (N,) mm; provenance: a dict
    (seed, settings, object hashes and splits, package versions, candidate counts per filter).
    """

    pose: torch.Tensor
    shape: torch.Tensor
    trans: torch.Tensor
    object: list
    kind: list
    approach: torch.Tensor
    gravity: torch.Tensor
    pd: torch.Tensor
    siv: torch.Tensor
    tips: torch.Tensor
    sd: torch.Tensor
    provenance: dict

    def __len__(self) -> int:
        return self.pose.shape[0]

    def select(self, idx) -> "GraspLibrary":
        """The grasps at integer indices or a bool mask ``idx``."""
        idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool:
            idx = idx.nonzero()[:, 0]
        pick = idx.reshape(-1).tolist()
        t = {k: getattr(self, k)[idx] for k in _TENSORS}
        return GraspLibrary(object=[self.object[i] for i in pick], kind=[self.kind[i] for i in pick],
                            provenance=self.provenance, **t)  # fmt: skip

    def split(self, name: str) -> "GraspLibrary":
        """The grasps of the objects of split ``name`` ("train" or "test")."""
        splits = self.provenance["splits"]
        if name not in set(splits.values()):
            raise ValueError(f"unknown split {name!r}; the library has {sorted(set(splits.values()))}")
        return self.select(torch.tensor([splits[o] == name for o in self.object], dtype=torch.bool))

    def counts(self) -> dict[str, int]:
        """Accepted grasps per object."""
        out: dict[str, int] = {}
        for o in self.object:
            out[o] = out.get(o, 0) + 1
        return out


DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "grasps.npz")


def save_library(lib: GraspLibrary, path: str = DEFAULT_PATH) -> None:
    """Write ``lib`` atomically as a compressed ``.npz`` (float32 tensors, names as strings)."""
    atomic_savez(path, dict(object=np.array(lib.object, dtype=str), kind=np.array(lib.kind, dtype=str),
                            provenance=np.array(json.dumps(lib.provenance)),
                            **{k: getattr(lib, k).float().numpy() for k in _TENSORS}))  # fmt: skip


def load_library(path: str = DEFAULT_PATH) -> GraspLibrary:
    """Read a grasp library written by :func:`save_library` (default: the committed one)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no grasp library at {path}; build one with `miho synth grasps`")
    try:
        with np.load(path, allow_pickle=False) as z:
            return GraspLibrary(object=[str(s) for s in z["object"]], kind=[str(s) for s in z["kind"]],
                                provenance=json.loads(str(z["provenance"])),
                                **{k: torch.from_numpy(z[k]) for k in _TENSORS})  # fmt: skip
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a grasp library ({e}); rebuild it with `miho synth grasps`") from e


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("miho", "torch", "numpy", "pybullet"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def candidate_seed(seed: int, obj_hash: str, k: int) -> int:
    """Seed of candidate ``k`` of the object with content hash ``obj_hash``."""
    return int(hashlib.sha1(f"{seed}:{obj_hash}:{k}".encode()).hexdigest()[:12], 16)


def _load_candidates(path: str, config: dict) -> dict:
    if not os.path.exists(path):
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["config"])) != config:
                return {}
            keys = [str(k) for k in z["keys"]]
            cols = {k[2:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("c_")}
    except (KeyError, ValueError, OSError):
        return {}  # a corrupt or foreign store: start again
    return {key: {c: v[i] for c, v in cols.items()} for i, key in enumerate(keys)}


def _save_candidates(path: str, config: dict, done: dict) -> None:
    keys = list(done)
    cols = {f"c_{c}": torch.stack([done[k][c] for k in keys]).numpy() for c in done[keys[0]]}
    atomic_savez(path, dict(config=np.array(json.dumps(config)), keys=np.array(keys, dtype=str), **cols))


def build_library(
    hand: HandModel,
    objects: list,
    candidates_per_object: int,
    path: str = DEFAULT_PATH,
    seed: int = 0,
    batch: int = 32,
    settings: SynthesisSettings = SynthesisSettings(),
    sim_options: dict | None = None,
    progress: bool = True,
    max_per_object: int | None = 20,
) -> GraspLibrary:
    """Synthesise ``candidates_per_object`` candidates around each object (a list of
    :class:`~miho.data.objects.ObjectMesh`) in batches of ``batch``, keep the accepted ones and
    write the library to ``path`` (atomically).

    Candidate k of an object starts from :func:`candidate_seed` (``seed``, the object's hash,
    k), so results do not depend on batching. At most ``max_per_object`` accepted grasps are kept
    per object (the first in candidate order; None: all), which balances the library. Every
    finished batch is added to a candidate store
    ``path + ".candidates.npz"``: a build that is interrupted, or asked later for more objects
    or candidates with the same seed and settings, makes only the missing candidates.
    """
    from tqdm.auto import tqdm

    config = json.loads(json.dumps(dict(seed=seed, settings=asdict(settings), hand=hand.name,
                                         hand_vertices=hand.num_vertices)))  # fmt: skip
    store = path + ".candidates.npz"
    done = _load_candidates(store, config)
    want = [(o, k, f"{o.name}:{o.hash}:{k}") for k in range(candidates_per_object) for o in objects]
    todo = [w for w in want if w[2] not in done]
    t0 = time.perf_counter()
    bar = tqdm(total=len(want), initial=len(want) - len(todo), desc="grasp candidates", unit="cand",
               disable=not progress)  # fmt: skip
    for i in range(0, len(todo), batch):
        part = todo[i : i + batch]
        out = synthesize_batch(hand, [o for o, _, _ in part], [candidate_seed(seed, o.hash, k) for o, k, _ in part],
                               settings, sim_options)  # fmt: skip
        for j, (_, _, key) in enumerate(part):
            done[key] = {c: v[j] for c, v in out.items()}
        _save_candidates(store, config, done)
        bar.update(len(part))
        bar.set_postfix(accepted=sum(int(done[w[2]]["accepted"]) for w in want if w[2] in done))
    bar.close()
    cand = {c: torch.stack([done[w[2]][c] for w in want]) for c in done[want[0][2]]}
    passes = settings.filters.passes(cand["pd"].double(), cand["siv"].double(), cand["tips"].double())
    counts, ok = {"candidates": len(want)}, torch.ones(len(want), dtype=torch.bool)
    for name, p in passes.items():
        ok = ok & p
        counts[f"after {name}"] = int(ok.sum())
    acc = cand["accepted"].clone()
    counts["after SD (accepted)"] = int(acc.sum())
    if max_per_object is not None:
        seen: dict[str, int] = {}
        for i, (o, _, _) in enumerate(want):  # candidate order: k-major, so the first k of each object
            if acc[i]:
                seen[o.name] = seen.get(o.name, 0) + 1
                acc[i] = seen[o.name] <= max_per_object
        counts[f"kept (at most {max_per_object} per object)"] = int(acc.sum())
    provenance = dict(config, objects={o.name: o.hash for o in objects}, splits={o.name: o.split for o in objects},
                      candidates_per_object=candidates_per_object, max_per_object=max_per_object, counts=counts,
                      versions=_versions(),
                      made_in_last_run=len(todo), last_run_seconds=round(time.perf_counter() - t0, 1),
                      date=time.strftime("%Y-%m-%d"))  # fmt: skip
    kinds = list(GRASP_TYPES)
    lib = GraspLibrary(object=[w[0].name for w, a in zip(want, acc) if a],
                       kind=[kinds[int(k)] for k in cand["kind"][acc]], provenance=provenance,
                       **{k: cand[k][acc].float() for k in _TENSORS})  # fmt: skip
    save_library(lib, path)
    return lib


def pose_pca(lib: GraspLibrary, num_components: int = 15, split: str = "train"):
    """A :class:`~miho.hand.pca.PosePCA` of the finger poses of the grasps of ``split``."""
    from miho.hand.pca import PosePCA

    return PosePCA.fit(lib.split(split).pose[:, 1:].double(), num_components)


def grasp_verts(hand: HandModel, lib: GraspLibrary, idx) -> torch.Tensor:
    """Hand vertices (K, V, 3) of grasps ``idx`` of ``lib`` in their objects' frames, metres."""
    idx = torch.as_tensor(idx).reshape(-1)
    f = dict(device=hand.device, dtype=hand.dtype)
    with torch.no_grad():
        return hand(lib.pose[idx].to(**f), lib.shape[idx].to(**f), lib.trans[idx].to(**f)).vertices


__all__ = [
    "DEFAULT_PATH",
    "GRASP_TYPES",
    "GraspFilters",
    "GraspLibrary",
    "LIBRARY_SIMULATION",
    "SYNTHESIS_GEO",
    "SynthesisSettings",
    "bounding_cuboid",
    "build_library",
    "candidate_seed",
    "candidate_start",
    "grasp_verts",
    "load_library",
    "pose_pca",
    "save_library",
    "score_grasps",
    "start_poses",
    "synthesize_batch",
    "tip_distances",
]

"""Fuzz: random and degenerate inputs through the package's public entry points.

A valid little scene (two hands next to two small objects, with their ground-truth field) is
broken by one or two mutations drawn from a seeded generator: an empty batch, NaN or inf, an
integer or half-precision tensor, a wrong or missing dimension, faces out of range, an object
without faces or vertices, faces turned inwards, a collapsed object, a mask of the wrong dtype, a
field of the wrong size or with region ids outside 0-16, hands of another vertex count, batches
that disagree. Every entry point must then either raise a ``ValueError`` with a message, or
return outputs that are all finite: never another exception, never NaN.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest
import torch

from miho import cpf, geo, metrics
from miho.amano import curl_pose
from miho.anchors import hand_regions
from miho.hand import load_hand
from miho.mesh import Meshes, cylinder, icosphere

RANDOM_PAIRS = 20


@pytest.fixture(scope="module")
def world():
    hand = load_hand()
    regions = hand_regions(hand)
    shapes = [cylinder(0.03, 0.12, 12, 4), icosphere(0.035, 1)]
    objs = Meshes.from_list([(v + torch.tensor([-0.05, 0.085, 0.0]), f) for v, f in shapes])
    g = torch.Generator().manual_seed(0)
    pose = curl_pose(hand, 0.3).expand(2, -1, -1) + 0.05 * torch.randn(2, 16, 3, generator=g)
    trans = 0.004 * torch.randn(2, 3, generator=g)
    with torch.no_grad():
        verts = hand(pose, trans=trans).vertices
    field = cpf.annotate(verts, objs.verts, regions, objs.vert_mask)
    base = dict(
        pose=pose, trans=trans, shape=torch.zeros(2, hand.num_shape), hand_verts=verts,
        obj_verts=objs.verts, obj_faces=objs.faces, vert_mask=objs.vert_mask, face_mask=objs.face_mask,
        vc=field.vc, cr=field.cr, ae=field.ae,
    )  # fmt: skip
    return hand, regions, base


# ---------------------------------------------------------------------- mutations
FLOATS = ("pose", "trans", "shape", "hand_verts", "obj_verts", "vc", "ae")


def _empty_batch(a, g):
    return {k: v[:0] for k, v in a.items()}


def _poison(value):
    def mutate(a, g):
        k = FLOATS[int(torch.randint(len(FLOATS), (1,), generator=g))]
        t = a[k].clone()
        if t.numel() == 0:
            return a
        t.reshape(-1)[int(torch.randint(t.numel(), (1,), generator=g))] = value  # contiguous: a view
        return {**a, k: t}

    mutate.__name__ = f"_poison_{value}"
    return mutate


def _dtype(dtype):
    def mutate(a, g):
        k = FLOATS[int(torch.randint(len(FLOATS), (1,), generator=g))]
        return {**a, k: a[k].to(dtype)}

    mutate.__name__ = f"_dtype_{str(dtype).removeprefix('torch.')}"
    return mutate


def _wrong_last_dim(a, g):
    k = ("pose", "trans", "hand_verts", "obj_verts")[int(torch.randint(4, (1,), generator=g))]
    return {**a, k: a[k][..., :2]}


def _drop_dim(a, g):
    k = ("pose", "trans", "hand_verts", "obj_verts", "vc")[int(torch.randint(5, (1,), generator=g))]
    return {**a, k: a[k][0]} if len(a[k]) else a


def _faces_out_of_range(a, g):
    f = a["obj_faces"].clone()
    f.reshape(-1)[:1] = a["obj_verts"].shape[1] + int(torch.randint(1, 5, (1,), generator=g))
    return {**a, "obj_faces": f}


def _negative_face(a, g):
    f = a["obj_faces"].clone()
    f.reshape(-1)[-1:] = -1
    return {**a, "obj_faces": f}


def _no_faces(a, g):
    return {**a, "obj_faces": a["obj_faces"][:, :0], "face_mask": a["face_mask"][:, :0]}


def _no_vertices(a, g):
    return {**a, "obj_verts": a["obj_verts"][:, :0], "vert_mask": a["vert_mask"][:, :0],
            "vc": a["vc"][:, :0], "cr": a["cr"][:, :0], "ae": a["ae"][:, :0]}  # fmt: skip


def _inward(a, g):
    return {**a, "obj_faces": a["obj_faces"].flip(-1)}


def _collapsed(a, g):
    return (
        {**a, "obj_verts": torch.zeros_like(a["obj_verts"]) + a["obj_verts"][:, :1]} if a["obj_verts"].shape[1] else a
    )


def _huge(a, g):
    return {**a, "obj_verts": a["obj_verts"] * 1e6}


def _mask_dtype(a, g):
    k = ("vert_mask", "face_mask")[int(torch.randint(2, (1,), generator=g))]
    return {**a, k: a[k].float()}


def _mask_all_false(a, g):
    return {**a, "vert_mask": torch.zeros_like(a["vert_mask"])}


def _field_size(a, g):
    return {**a, "vc": a["vc"][:, :-1], "cr": a["cr"][:, :-1], "ae": a["ae"][:, :-1]}


def _region_out_of_range(a, g):
    cr = a["cr"].clone()
    cr.reshape(-1)[:1] = (17, -1, 40)[int(torch.randint(3, (1,), generator=g))]
    return {**a, "cr": cr, "vc": torch.ones_like(a["vc"])}


def _other_hand(a, g):
    return {**a, "hand_verts": a["hand_verts"][:, :778]}


def _batch_mismatch(a, g):
    k = ("pose", "trans", "hand_verts", "vc", "shape")[int(torch.randint(5, (1,), generator=g))]
    return {**a, k: a[k][:1]}


MUTATIONS = [
    _empty_batch, _poison(float("nan")), _poison(float("inf")), _dtype(torch.long), _dtype(torch.float16),
    _wrong_last_dim, _drop_dim, _faces_out_of_range, _negative_face, _no_faces, _no_vertices, _inward,
    _collapsed, _huge, _mask_dtype, _mask_all_false, _field_size, _region_out_of_range, _other_hand,
    _batch_mismatch,
]  # fmt: skip


# ---------------------------------------------------------------------- entry points
def _meshes(a):
    return Meshes(a["obj_verts"], a["obj_faces"], a["vert_mask"], a["face_mask"])


def _field(a):
    return cpf.CPF(a["vc"], a["cr"], a["ae"])


def _entries(hand, regions):
    return {
        "hand": lambda a: hand(a["pose"], a["shape"], a["trans"]),
        "closed hand": lambda a: hand.closed(a["hand_verts"]),
        "anchors": lambda a: regions.anchors(a["hand_verts"]),
        "Meshes": _meshes,
        "annotate": lambda a: cpf.annotate(a["hand_verts"], a["obj_verts"], regions, a["vert_mask"]),
        "attraction": lambda a: cpf.attraction_energy(
            regions.anchors(a["hand_verts"]), a["obj_verts"], _field(a), regions.anchor_region, a["vert_mask"]
        ),
        "repulsion": lambda a: cpf.repulsion_energy(
            a["hand_verts"], a["obj_verts"], _meshes(a).normals(), a["vert_mask"], neighbours=16
        ),
        "optimize": lambda a: geo.optimize(hand, a["pose"], _meshes(a), _field(a), trans=a["trans"], iterations=2),
        "evaluate": lambda a: metrics.evaluate(a["hand_verts"], _meshes(a), hand=hand, resolution=8, voxel_cache=None),
    }


def _tensors(out):
    """Every floating tensor or array inside an output (dataclasses, dicts, tuples, tables)."""
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, np.ndarray) and out.dtype.kind == "f":
        yield torch.from_numpy(out)
    elif isinstance(out, float):
        yield torch.tensor(out)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for f in dataclasses.fields(out):
            yield from _tensors(getattr(out, f.name))
    elif isinstance(out, dict):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (tuple, list)):
        for v in out:
            yield from _tensors(v)
    elif isinstance(out, metrics.MetricTable):
        yield from _tensors(out.columns)


def _cases(seed: int):
    """Each mutation alone, then ``RANDOM_PAIRS`` random pairs; one generator drives all draws."""
    g = torch.Generator().manual_seed(seed)
    for p in range(len(MUTATIONS)):
        yield [p], g
    for _ in range(RANDOM_PAIRS):
        yield torch.randint(len(MUTATIONS), (2,), generator=g).tolist(), g


@pytest.mark.parametrize("entry", ["hand", "closed hand", "anchors", "Meshes", "annotate", "attraction",
                                   "repulsion", "optimize", "evaluate"])  # fmt: skip
def test_bad_inputs_raise_value_error_or_give_finite_outputs(world, entry):
    hand, regions, base = world
    call = _entries(hand, regions)[entry]
    call(base)  # the unbroken scene works
    failures, raised = [], 0
    for n, (picks, g) in enumerate(_cases(seed=zlib.crc32(entry.encode()))):
        args = dict(base)
        for p in picks:
            args = MUTATIONS[p](args, g)
        names = "+".join(MUTATIONS[p].__name__ for p in picks)
        try:
            out = call(args)
        except ValueError as e:
            raised += 1
            if not str(e):
                failures.append(f"case {n} ({names}): ValueError without a message")
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            failures.append(f"case {n} ({names}): {type(e).__name__}: {str(e)[:200]}")
            continue
        bad = [t for t in _tensors(out) if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            failures.append(f"case {n} ({names}): returned NaN/inf")
    assert not failures, "\n".join(failures)
    assert raised > 0  # the mutations do reach the checks

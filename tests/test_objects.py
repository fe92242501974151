"""The object library: closed, sized, centred, hashed, split by object."""

import math

import pytest
import torch
import trimesh

from miho.data import objects as O
from miho.synthesis import example_objects


@pytest.fixture(scope="module")
def library():
    return O.object_library(random_objects=40)


def test_every_object_is_prepared(library):
    objs, errors = library
    assert len(objs) >= 50 and set(errors) <= {f"random_{i:03d}" for i in range(40)}
    for o in objs:
        m = trimesh.Trimesh(o.verts.numpy(), o.faces.numpy(), process=False)
        assert m.is_watertight and m.is_winding_consistent and m.volume > 0, o.name
        assert O.SIZE_MIN - 1e-6 <= o.size <= O.SIZE_MAX + 1e-6, o.name
        assert 1000 <= len(o.verts) <= 4000, o.name
        assert torch.allclose(torch.as_tensor(m.center_mass, dtype=torch.float32), torch.zeros(3), atol=1e-5), o.name
        assert torch.allclose(o.normals.norm(dim=-1), torch.ones(len(o.verts)), atol=1e-4)


def test_hashes_and_splits(library):
    objs, _ = library
    again, _ = O.object_library(random_objects=40)
    assert [o.hash for o in objs] == [o.hash for o in again]
    assert len({o.hash for o in objs}) == len(objs)  # no two objects share a shape
    train = {o.name for o in objs if o.split == "train"}
    test = {o.name for o in objs if o.split == "test"}
    assert train and test and not train & test and len(test) >= 8


def test_open_meshes_are_rejected_with_a_clear_error():
    v, f = example_objects(names=("mug",))["mug"]  # pybullet's mug has open seams at the handle
    with pytest.raises(ValueError, match="not a closed"):
        O.prepare("mug", v, f, "pybullet_data/objects/mug.obj")


def test_revolve_and_torus_volumes():
    r, h = 0.03, 0.1
    v, f = O.revolve([(0, 0), (r, 0), (r, h), (0, h)], segments=256, points=200)
    m = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    assert m.is_watertight and m.volume == pytest.approx(math.pi * r * r * h, rel=2e-3)
    v, f = O.torus(0.04, 0.01, 128, 64)
    m = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    assert m.is_watertight and m.volume == pytest.approx(2 * math.pi**2 * 0.04 * 0.01**2, rel=5e-3)
    with pytest.raises(ValueError, match="axis"):
        O.revolve([(0.01, 0), (0.02, 0.1), (0, 0.1)])


def test_unknown_objects_raise():
    with pytest.raises(ValueError, match="unknown pybullet"):
        O.pybullet_mesh("random_9999")
    with pytest.raises(ValueError, match="unknown pybullet object"):
        O.pybullet_mesh("spaceship")


def test_convex_decomposition_is_shipped(library, tmp_path, monkeypatch):
    """The cube is a grasp-library object: its decomposition ships with the package and is
    copied into the cache without running VHACD."""
    import miho.simulation as S

    monkeypatch.setattr(S, "_vhacd", lambda *a, **k: (_ for _ in ()).throw(AssertionError("VHACD ran")))
    obj = next(o for o in library[0] if o.name == "cube")
    path = obj.convex_decomposition(tmp_path)
    key = S.mesh_key(obj.verts.double().numpy(), obj.faces.numpy(), S.SimSettings())
    assert path == str(tmp_path / f"{key}.obj") and open(path, "rb").read() == S.shipped_decompositions()[key]
    assert open(path).read().count("\nv ") >= 8
    assert obj.convex_decomposition(tmp_path) == path


def test_marching_tetrahedra_on_a_sphere_field():
    from miho.mesh import is_closed, marching_tetrahedra

    r, step = 0.04, 0.004
    g = torch.arange(-14, 15, dtype=torch.float64) * step
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    field = r - torch.sqrt(x * x + y * y + z * z) + 1e-9  # positive inside
    v, f = marching_tetrahedra(field, torch.full((3,), -14 * step, dtype=torch.float64), torch.full((3,), step))
    m = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    assert is_closed(f) and m.is_watertight and m.is_winding_consistent and m.volume > 0
    assert m.volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.02)
    # Vertices lie on the sphere up to the chord error of linear interpolation within a cell.
    assert (v.norm(dim=-1) - r).abs().max() < step**2 / r


def test_open_meshes_are_remeshed_or_rejected():
    import os

    import pybullet_data

    from miho.mesh import load_obj, weld

    mug = O.make_object("mug")  # pybullet's mug: open seams
    m = trimesh.Trimesh(mug.verts.numpy(), mug.faces.numpy(), process=False)
    assert m.is_watertight and m.is_winding_consistent and "remeshed" in mug.source
    v, f = weld(*load_obj(os.path.join(pybullet_data.getDataPath(), "objects", "mug.obj"), dtype=torch.float64), 1e-7)
    scale = mug.size / float((v.max(0).values - v.min(0).values).max())
    original = abs(trimesh.Trimesh(v.numpy(), f.numpy(), process=False).volume) * scale**3
    assert m.volume == pytest.approx(original, rel=0.1)
    with pytest.raises(ValueError, match="random_037.*thin parts"):
        O.make_object("random_037")
    with pytest.raises(ValueError, match="random_168.*degenerate"):
        O.make_object("random_168")  # every face collapses when its duplicate vertices merge

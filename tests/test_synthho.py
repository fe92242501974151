"""SynthHO: the committed grasp library, the renderer and the Dataset."""

import math
import os

import numpy as np
import pytest
import torch

from miho import cpf, experiments
from miho.anchors import hand_regions
from miho.data import grasps as G
from miho.data import render as R
from miho.data.objects import load_objects, make_object
from miho.data.synthho import Disturbance, SynthHO, collate, object_split
from miho.hand import load_hand
from miho.mesh import Meshes, box
from miho.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def hand():
    return load_hand()


@pytest.fixture(scope="module")
def lib():
    return G.load_library()


@pytest.fixture(scope="module")
def objects(lib):
    return {o.name: o for o in load_objects(sorted(lib.provenance["objects"]))}


# ---------------------------------------------------------------------- the grasp library
def test_library_is_committed_small_and_large_enough(lib):
    assert os.path.getsize(G.DEFAULT_PATH) < 5 * 2**20
    train, test = lib.split("train"), lib.split("test")
    assert len(train) >= 1000 and len(set(train.object)) >= 30
    assert len(test) >= 200 and len(set(test.object)) >= 8
    prov = lib.provenance
    for key in ("seed", "settings", "objects", "splits", "versions", "counts", "hand"):
        assert key in prov, key
    assert list(prov["counts"].values())[-1] == len(lib)
    assert len(set(lib.kind)) == len(G.GRASP_TYPES)  # several grasp types


def test_library_objects_are_the_current_objects(lib, objects):
    for name, h in lib.provenance["objects"].items():
        assert objects[name].hash == h, name


def test_held_out_objects_never_appear_in_training(lib, objects):
    splits = lib.provenance["splits"]
    train = set(lib.split("train").object)
    test = set(lib.split("test").object)
    assert not train & test
    assert all(splits[o] == "test" for o in test)
    objs = list(objects.values())
    sets = {s: set(SynthHO(s, library=lib, objects=objs, images=False).object_names) for s in ("train", "val", "test")}
    assert not sets["train"] & sets["test"] and not sets["val"] & sets["test"] and not sets["train"] & sets["val"]
    assert sets["test"] == test and sets["train"] | sets["val"] == train


def test_every_accepted_grasp_passes_the_filters_when_rescored(hand, lib, objects):
    """Re-score every stored grasp from its parameters (PD, SIV and fingertip contact per object,
    then the simulation with its stored gravity for all at once) and check the filters and the
    stored scores."""
    from miho.simulation import simulation_displacement

    f = G.SynthesisSettings().filters
    closed = []
    for name in sorted(set(lib.object)):
        idx = torch.tensor([i for i, o in enumerate(lib.object) if o == name])
        part, o = lib.select(idx), objects[name]
        meshes = Meshes.from_list([(o.verts, o.faces)] * len(part))
        sc = G.score_grasps(hand, part.pose, part.shape, part.trans, meshes, part.gravity, f, simulate=False)
        assert bool(sc["accepted"].all()), (name, (~sc["accepted"]).nonzero()[:, 0].tolist())
        assert torch.allclose(sc["pd"], part.pd.double(), atol=0.05), name
        assert torch.allclose(sc["siv"], part.siv.double(), atol=0.05), name
        assert torch.allclose(sc["tips"], part.tips.double(), atol=0.05), name
        with torch.no_grad():
            closed.append((idx, hand.closed(hand(part.pose, part.shape, part.trans).vertices)[0]))
    idx = torch.cat([i for i, _ in closed])
    verts = torch.cat([v for _, v in closed])
    sd = simulation_displacement(
        verts.double().numpy(), hand.closed_faces.numpy(),
        [objects[lib.object[i]].verts.double().numpy() for i in idx.tolist()],
        [objects[lib.object[i]].faces.numpy() for i in idx.tolist()],
        gravity=(9.8 * lib.gravity[idx]).double().numpy(), workers=2, progress=False,
    )  # fmt: skip
    assert (sd < f.max_sd).all()
    # The simulation is chaotic: rounding differences between the batched hand of the build and
    # this one change a few trajectories (here about 1 %), the others agree to 1e-6 mm.
    diff = np.abs(sd - lib.sd[idx].double().numpy())
    assert (diff < 0.01).mean() > 0.97


def test_bounding_cuboid_of_a_rotated_box():
    v, _ = box((0.04, 0.10, 0.06), divisions=4, dtype=torch.float64)
    rot = axis_angle_to_matrix(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64))
    axes, centre, half = G.bounding_cuboid(v @ rot.T + torch.tensor([0.01, 0.0, -0.02], dtype=torch.float64))
    assert torch.allclose(half, torch.tensor([0.05, 0.03, 0.02], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(centre, torch.tensor([0.01, 0.0, -0.02], dtype=torch.float64), atol=1e-9)
    assert torch.allclose((axes.T @ rot).abs(), torch.eye(3, dtype=torch.float64)[[1, 2, 0]], atol=1e-9)
    assert torch.det(axes) > 0


def test_candidates_do_not_depend_on_their_batch(hand, tmp_path):
    objs = load_objects(["ball", "brick"])
    settings = G.SynthesisSettings(iterations=5)
    seeds = [G.candidate_seed(0, o.hash, 0) for o in objs]
    both = G.synthesize_batch(hand, objs, seeds, settings, sim_options=dict(workers=1))
    alone = G.synthesize_batch(hand, objs[1:], seeds[1:], settings, sim_options=dict(workers=1))
    for k in ("pose", "trans", "shape", "pd", "siv"):
        assert torch.allclose(both[k][1:].double(), alone[k].double(), atol=1e-5), k


def test_build_is_resumable_and_grows(hand, tmp_path, monkeypatch):
    objs = load_objects(["ball", "brick"])
    settings = G.SynthesisSettings(iterations=5)
    path = str(tmp_path / "lib.npz")
    made = []
    real = G.synthesize_batch

    def counting(hand, objs, seeds, *a, **k):
        made.extend(seeds)
        return real(hand, objs, seeds, *a, **k)

    monkeypatch.setattr(G, "synthesize_batch", counting)
    first = G.build_library(hand, objs[:1], 2, path=path, batch=2, settings=settings, progress=False,
                            sim_options=dict(workers=1))  # fmt: skip
    assert len(made) == 2 and first.provenance["counts"]["candidates"] == 2
    again = G.build_library(hand, objs, 2, path=path, batch=2, settings=settings, progress=False,
                            sim_options=dict(workers=1))  # fmt: skip
    assert len(made) == 4  # only the new object's two candidates were made
    assert again.provenance["counts"]["candidates"] == 4
    loaded = G.load_library(path)
    assert loaded.object == again.object and torch.equal(loaded.pose, again.pose)
    with pytest.raises(FileNotFoundError, match="miho synth grasps"):
        G.load_library(str(tmp_path / "missing.npz"))


def test_unknown_object_is_named():
    with pytest.raises(ValueError, match="random_9999"):
        make_object("random_9999")
    with pytest.raises(ValueError, match="no_such_thing"):
        make_object("no_such_thing")


def test_pose_pca_is_the_best_linear_basis(lib):
    pca = G.pose_pca(lib, 10)
    x = lib.split("train").pose[:, 1:].double()
    err = (pca.decode(pca.encode(x)) - x).square().sum()
    flat = x.reshape(len(x), -1)
    mean = flat.mean(0)
    top = (flat - mean).var(0).argsort(descending=True)[:10]  # the 10 most varying coordinates
    keep = torch.zeros(45, dtype=torch.bool)
    keep[top] = True
    err_axes = ((flat - mean) * ~keep).square().sum()
    assert err < err_axes
    assert torch.allclose(G.pose_pca(lib, 45).decode(G.pose_pca(lib, 45).encode(x)), x, atol=1e-5)


# ---------------------------------------------------------------------- rendering
def _scene(hand, lib, objects, g=0):
    with torch.no_grad():
        hv = hand(lib.pose[g : g + 1], lib.shape[g : g + 1], lib.trans[g : g + 1]).vertices[0].double()
    from miho.mesh import vertex_normals

    hn = vertex_normals(hv[None], hand.faces[None])[0]
    o = objects[lib.object[g]]
    return (hv.numpy(), hand.faces.numpy(), hn.numpy()), (o.verts.double().numpy(), o.faces.numpy(),
                                                           o.normals.double().numpy())  # fmt: skip


def test_rendering_is_deterministic_and_masks_match_projections(hand, lib, objects):
    h, o = _scene(hand, lib, objects)
    rng = np.random.default_rng(3)
    cam = R.random_view(np.concatenate((h[0], o[0])), rng)
    app = R.random_appearance(rng)
    a = R.render(h, o, cam, app)
    b = R.Renderer().render(h, o, cam, app)  # a fresh client gives the same pixels
    for k in ("rgb", "depth", "mask"):
        assert np.array_equal(a[k], b[k]), k
    for verts, label in ((h[0], R.HAND), (o[0], R.OBJECT)):
        uv = cam.project(verts)
        z = cam.to_camera(verts)[:, 2]
        ij = np.floor(uv).astype(int)
        assert ((ij >= 0) & (ij < 256)).all()
        # Every vertex lands on (or within a pixel of) a drawn pixel, and nothing is drawn
        # behind it: the nearest drawn depth around its pixel is at most its own depth.
        near = np.zeros(len(ij), dtype=bool)
        nearest = np.full(len(ij), np.inf)
        for du in (-1, 0, 1):
            for dv in (-1, 0, 1):
                y, x = np.clip(ij[:, 1] + dv, 0, 255), np.clip(ij[:, 0] + du, 0, 255)
                drawn = a["mask"][y, x] > 0
                near |= drawn
                nearest = np.where(drawn, np.minimum(nearest, a["depth"][y, x]), nearest)
        assert near.all()
        assert (nearest <= z + 2e-3).mean() > 0.99
        # The label's pixels lie inside the projected vertices' box, at their depths.
        ys, xs = np.nonzero(a["mask"] == label)
        assert xs.min() >= uv[:, 0].min() - 1 and xs.max() <= uv[:, 0].max() + 1
        assert ys.min() >= uv[:, 1].min() - 1 and ys.max() <= uv[:, 1].max() + 1
        dl = a["depth"][a["mask"] == label]
        assert dl.min() >= z.min() - 1e-3 and dl.max() <= z.max() + 1e-3
    assert (a["depth"][a["mask"] == R.BACKGROUND] == 0).all()


# ---------------------------------------------------------------------- the dataset
@pytest.fixture(scope="module")
def dataset(lib, objects, hand, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("images"))
    return SynthHO("test", views=2, library=lib, objects=list(objects.values()), hand=hand, cache_dir=cache,
                   disturb=Disturbance())  # fmt: skip


def test_sample_is_consistent_in_camera_space(dataset, hand):
    s = dataset[3]
    with torch.no_grad():
        out = hand(s["hand_pose"][None], s["hand_shape"][None], s["hand_trans"][None])
    assert torch.allclose(out.vertices[0], s["hand_verts"], atol=1e-5)
    assert torch.allclose(out.joints21[0], s["joints"], atol=1e-5)
    obj = dataset.objects[s["obj_name"]]
    assert torch.allclose(obj.verts @ s["obj_rot"].T + s["obj_trans"], s["obj_verts"], atol=1e-5)
    assert torch.allclose(s["cam_R"], s["obj_rot"]) and torch.det(s["obj_rot"]) > 0.999
    uv = s["joints"] @ s["K"].T
    assert torch.allclose(uv[:, :2] / uv[:, 2:], s["joints_2d"], atol=1e-3)
    assert (s["hand_verts"][:, 2] > 0).all() and s["image"].shape == (3, 256, 256)
    # The mask agrees with the projected vertices (within a pixel).
    drawn = torch.nn.functional.max_pool2d((s["mask"] > 0).float()[None, None], 3, 1, 1)[0, 0]
    for key in ("hand_verts_2d", "obj_verts_2d"):
        ij = s[key].floor().long()
        assert ((ij >= 0) & (ij < 256)).all()
        assert bool((drawn[ij[:, 1], ij[:, 0]] > 0).all()), key


def test_sample_cpf_agrees_with_recomputing_it(dataset, hand):
    s = dataset[1]
    field = cpf.annotate(s["hand_verts"][None].double(), s["obj_verts"][None].double(), hand_regions(hand))
    assert torch.equal(field.vc[0].bool(), s["vc"].bool())
    assert torch.equal(field.cr[0], s["cr"])
    assert torch.allclose(field.ae[0].float(), s["ae"], atol=1e-4)
    assert s["vc"].sum() > 0  # accepted grasps touch their objects


def test_samples_are_deterministic_and_cached(dataset):
    a = dataset[0]
    path = dataset.image_path(*dataset.index(0))
    assert os.path.exists(path)
    b = dataset[0]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    # A corrupt cache entry is rendered again.
    with open(path, "wb") as fh:
        fh.write(b"not an npz")
    c = dataset[0]
    assert torch.equal(a["image"], c["image"])
    assert np.load(path)["rgb"].shape == (256, 256, 3)


def test_disturbance_matches_its_settings(dataset):
    angles, offsets, shifts = [], [], []
    for i in range(0, min(len(dataset), 60)):
        s = dataset[i] if i < 2 else _geometry_only(dataset, i)
        Rn = s["obj_rot_noisy"] @ s["obj_rot"].T
        angles.append(math.acos(max(-1.0, min(1.0, (float(torch.trace(Rn)) - 1) / 2))))
        offsets.append(float((s["hand_trans_noisy"] - s["hand_trans"]).norm()))
        # The object turns about its own centre (its frame's origin), which moves by the offset alone.
        shifts.append(float((s["obj_trans_noisy"] - s["obj_trans"]).norm()))
        if i < 3:  # the disturbed object of the GeO ablation: its own vertices at the disturbed pose
            own = dataset.objects[s["obj_name"]].verts
            want = own @ s["obj_rot_noisy"].T + s["obj_trans_noisy"]
            assert torch.allclose(experiments.disturbed_objects(collate([s])).verts[0], want, atol=1e-6)
    assert max(angles) <= math.pi / 24 + 1e-4
    assert 0.006 < np.mean(offsets) < 0.014 and 0.006 < np.mean(shifts) < 0.014  # N(10 mm, 5 mm) lengths


def _geometry_only(dataset, i):
    images, dataset.images = dataset.images, False
    try:
        return dataset[i]
    finally:
        dataset.images = images


def test_collate_pads_objects(dataset):
    batch = collate([_geometry_only(dataset, i) for i in range(4)])
    n = batch["obj_verts"].shape[1]
    assert batch["obj_mask"].shape == (4, n) and batch["cr"].shape == (4, n)
    for b in range(4):
        k = int(batch["obj_mask"][b].sum())
        assert (batch["cr"][b, k:] == -1).all() and (batch["vc"][b, k:] == 0).all()


def test_bad_arguments_are_named(lib):
    with pytest.raises(ValueError, match="split"):
        SynthHO("training", library=lib)
    with pytest.raises(ValueError, match="views"):
        SynthHO("train", views=0, library=lib)
    assert object_split(lib.split("test").object[0], lib) == "test"


def test_ablation_study_reproduces_the_repulsion_trends(dataset, hand):
    """GeO from disturbed grasps driven by the true field: without E_rpl the hands sink deeper
    (paper Table 3), a stiff k_rpl keeps them out and farther (Table 5); the start is scored
    against the truth as the rigid motions of the object say."""
    batch = collate([_geometry_only(dataset, i) for i in (0, 5, 11)])
    settings = {"full": {}, "no E_rpl": dict(repulsion="none"), "stiff": dict(k_rpl=8e-3)}
    study = experiments.ablation_study(hand, batch, settings, iterations=60, resolution=24)
    assert (study.truth["HE"] == 0).all() and (study.truth["OE"] == 0).all()
    for b, name in enumerate(batch["obj_name"]):  # OE of the start: the object's own vertices at both poses
        own = dataset.objects[name].verts.double()
        rot, rot_n = batch["obj_rot"][b].double(), batch["obj_rot_noisy"][b].double()
        moved = own @ (rot_n - rot).T + (batch["obj_trans_noisy"][b] - batch["obj_trans"][b]).double()
        assert study.start["OE"][b].item() == pytest.approx(1000 * moved.norm(dim=-1).mean().item(), abs=1e-3)
    full, free, stiff = (study.runs[k].mean() for k in settings)
    assert free["SIV"] > full["SIV"] and free["PD"] > full["PD"]
    assert stiff["SIV"] <= full["SIV"] and stiff["DD"] > full["DD"]
    assert [r[0] for r in study.rows()] == ["ground truth", "disturbed start", *settings]
    lines = study.to_markdown().splitlines()
    assert lines[0].startswith("| setting | HE (mm) | OE (mm) | PD (mm) | SIV (cm^3) | DD (mm)") and len(lines) == 7
    with pytest.raises(ValueError, match="disturb=Disturbance"):
        experiments.ablation_study(hand, {k: v for k, v in batch.items() if "noisy" not in k}, settings)

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
from miho.data.synthho import SPLITS, Disturbance, SynthHO, collate, grasp_key, grasp_splits, object_split
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


def test_held_out_objects_never_appear_in_training(lib, objects, hand):
    splits = lib.provenance["splits"]
    train = set(lib.split("train").object)
    test = set(lib.split("test").object)
    assert not train & test
    assert all(splits[o] == "test" for o in test)
    objs = list(objects.values())
    sets = {s: set(SynthHO(s, library=lib, objects=objs, images=False, hand=hand).object_names) for s in SPLITS}
    assert not sets["train"] & sets["test"] and not sets["val"] & sets["test"] and not sets["train"] & sets["val"]
    assert sets["test"] == test and sets["train"] | sets["val"] == train
    assert sets["test-seen"] <= sets["train"]  # seen objects, unseen grasps


def test_grasp_splits_are_disjoint_and_hold_out_a_few_grasps_of_each_training_object(lib, objects, hand):
    splits = grasp_splits(lib)
    assert set(splits) == set(SPLITS)
    members = {s: {g for g, x in enumerate(splits) if x == s} for s in SPLITS}
    assert sum(len(m) for m in members.values()) == len(lib)  # every grasp in exactly one split
    objs_of = {s: {lib.object[g] for g in m} for s, m in members.items()}
    # Object level: unseen objects (test) and validation objects share nothing with the training
    # objects, whose grasps are split between train and test-seen.
    assert not objs_of["test"] & (objs_of["train"] | objs_of["val"] | objs_of["test-seen"])
    assert not objs_of["val"] & (objs_of["train"] | objs_of["test-seen"])
    counts = lib.counts()
    assert objs_of["test-seen"] == {o for o in objs_of["train"] if counts[o] >= 2}
    for name in objs_of["train"]:
        seen = sum(1 for g in members["test-seen"] if lib.object[g] == name)
        assert seen == min(3, counts[name] // 2), name
    assert all(object_split(o, lib) == "test" for o in objs_of["test"])
    # The dataset serves exactly these grasps.
    ds = SynthHO("test-seen", views=2, library=lib, objects=list(objects.values()), images=False, hand=hand)
    assert set(ds.grasps) == members["test-seen"] and len(ds) == 2 * len(members["test-seen"])
    with pytest.raises(ValueError, match="seen_per_object"):
        grasp_splits(lib, seen_per_object=-1)
    with pytest.raises(ValueError, match="val_fraction"):
        grasp_splits(lib, val_fraction=1.5)


def test_grasp_splits_do_not_depend_on_the_library_order(lib):
    perm = torch.randperm(len(lib), generator=torch.Generator().manual_seed(5))
    shuffled = lib.select(perm)
    a, b = grasp_splits(lib), grasp_splits(shuffled)
    assert [a[int(i)] for i in perm] == b  # the same grasp lands in the same split
    assert grasp_splits(lib) == a
    # A grasp's key is its own: moving it in the library does not change it.
    assert grasp_key(lib, int(perm[7])) == grasp_key(shuffled, 7)


def test_shipped_decompositions_match_the_library_objects(objects):
    """Every library object has its VHACD decomposition shipped under the current key (object
    mesh and settings) for the default and the ObMan settings, and nothing else is shipped:
    changing an object or a VHACD setting fails here until the asset is rebuilt
    (``python data_scripts/build_vhacd_asset.py``)."""
    import json

    from miho import simulation as S

    assert S.SHIPPED_VHACD.is_file() and S.SHIPPED_VHACD.stat().st_size < 5 * 2**20
    want = {}
    for sname, settings in (("default", S.SimSettings()), ("obman", S.OBMAN)):
        for name, o in objects.items():
            want[S.mesh_key(o.verts.double().numpy(), o.faces.numpy(), settings)] = {"object": name, "settings": sname}
    shipped = S.shipped_decompositions()
    assert set(shipped) == set(want)
    with np.load(S.SHIPPED_VHACD) as z:
        assert json.loads(str(z["index"])) == want
    assert all(text.startswith(b"o ") or b"\nv " in text for text in shipped.values())


def test_a_shipped_decomposition_is_used_without_vhacd(lib, objects, hand, tmp_path, monkeypatch):
    from miho import simulation as S

    def no_vhacd(*a, **k):
        raise AssertionError("VHACD ran")

    monkeypatch.setattr(S, "_vhacd", no_vhacd)
    g = 0
    o = objects[lib.object[g]]
    with torch.no_grad():
        cv = hand.closed(hand(lib.pose[g : g + 1], lib.shape[g : g + 1], lib.trans[g : g + 1]).vertices)[0]
    sd = S.simulation_displacement(
        cv.double().numpy(), hand.closed_faces.numpy(), [o.verts.double().numpy()], [o.faces.numpy()],
        gravity=(9.8 * lib.gravity[g : g + 1]).double().numpy(), settings=G.LIBRARY_SIMULATION, cache_dir=tmp_path,
        workers=1, progress=False,
    )  # fmt: skip
    # the library's own SD, from the shipped hulls: a single run (LIBRARY_SIMULATION) is chaotic (see
    # miho.simulation), and the closed hand's float rounding differs between CPUs: the machine of
    # 2026-12-07 gives 6.30 mm where the library's machine gave 6.99 (the bytes below are what must match)
    assert sd[0] == pytest.approx(float(lib.sd[g]), abs=1.0)
    key = S.mesh_key(o.verts.double().numpy(), o.faces.numpy(), G.LIBRARY_SIMULATION)
    assert (tmp_path / f"{key}.obj").read_bytes() == S.shipped_decompositions()[key]


def test_acceptance_test_on_known_scores():
    f = G.GraspFilters()  # PD < 5 mm, SIV < 2 cm^3, thumb and 2 other tips within 5 mm, SD < 20 mm
    pd = torch.tensor([1.0, 6.0, 1.0, 1.0, 1.0, 4.9])
    siv = torch.tensor([0.5, 0.5, 2.5, 0.5, 0.5, 1.9])
    near, far = 1.0, 9.0
    tips = torch.tensor([
        [near, near, far, far, near],  # index, middle, thumb: contact
        [near, near, far, far, near],
        [near, near, far, far, near],
        [near, near, near, near, far],  # thumb off: no contact
        [near, far, far, far, near],  # one other finger only: no contact
        [far, far, near, near, near],
    ])  # fmt: skip
    sd = torch.tensor([3.0, 3.0, 3.0, 3.0, 3.0, float("nan")])
    out = f.passes(pd, siv, tips, sd)
    assert list(out) == ["PD", "SIV", "contact", "SD"]
    assert out["PD"].tolist() == [True, False, True, True, True, True]
    assert out["SIV"].tolist() == [True, True, False, True, True, True]
    assert out["contact"].tolist() == [True, True, True, False, False, True]
    assert out["SD"].tolist() == [True, True, True, True, True, False]  # NaN: not simulated
    assert list(f.passes(pd, siv, tips)) == ["PD", "SIV", "contact"]
    with pytest.raises(ValueError, match="tips"):
        f.passes(pd, siv, tips[:, :4])
    with pytest.raises(ValueError, match="sd"):
        f.passes(pd, siv, tips, sd[:3])


@pytest.mark.parametrize("sample", [(8, 64), pytest.param(None, marks=pytest.mark.slow, id="all")])
def test_accepted_grasps_pass_the_filters_when_rescored(hand, lib, objects, sample):
    """Re-score stored grasps from their parameters and check the filters and the stored scores:
    PD, SIV and fingertip contact per object, then the simulation with its stored gravity, as
    the library was filtered (``LIBRARY_SIMULATION``). By default a seeded sample: 64 grasps
    simulated, the first 8 of them also re-scored geometrically (PD and fingertip distances take
    seconds a grasp on 2 CPU cores); every grasp of the library with the slow tests (``-m slow``)."""
    from miho.simulation import simulation_displacement

    f = G.SynthesisSettings().filters
    order = np.arange(len(lib)) if sample is None else np.random.default_rng(0).choice(len(lib), sample[1], False)
    rescore = set(order.tolist() if sample is None else order[: sample[0]].tolist())
    simulate = set(order.tolist())
    closed, scores = [], []
    for name in sorted({lib.object[i] for i in simulate}):
        own = [i for i, o in enumerate(lib.object) if o == name]
        o = objects[name]
        geo = torch.tensor([i for i in own if i in rescore], dtype=torch.long)
        if len(geo):
            part = lib.select(geo)
            meshes = Meshes.from_list([(o.verts, o.faces)] * len(part))
            sc = G.score_grasps(hand, part.pose, part.shape, part.trans, meshes, part.gravity, f, simulate=False)
            assert bool(sc["accepted"].all()), (name, (~sc["accepted"]).nonzero()[:, 0].tolist())
            assert torch.allclose(sc["pd"], part.pd.double(), atol=0.05), name
            assert torch.allclose(sc["siv"], part.siv.double(), atol=0.05), name
            assert torch.allclose(sc["tips"], part.tips.double(), atol=0.05), name
            scores.append(sc)
        # The hands to simulate, made with all of the object's grasps in one batch as the full
        # check makes them (float rounding depends on the batch, and the simulation is chaotic).
        whole = lib.select(torch.tensor(own))
        with torch.no_grad():
            cv = hand.closed(hand(whole.pose, whole.shape, whole.trans).vertices)[0]
        keep = [k for k, i in enumerate(own) if i in simulate]
        closed.append((torch.tensor(own)[keep], cv[keep]))
    assert sum(len(s["pd"]) for s in scores) == len(rescore)
    idx = torch.cat([i for i, _ in closed])
    verts = torch.cat([v for _, v in closed])
    sd = simulation_displacement(
        verts.double().numpy(), hand.closed_faces.numpy(),
        [objects[lib.object[i]].verts.double().numpy() for i in idx.tolist()],
        [objects[lib.object[i]].faces.numpy() for i in idx.tolist()],
        gravity=(9.8 * lib.gravity[idx]).double().numpy(), settings=G.LIBRARY_SIMULATION, workers=2, progress=False,
    )  # fmt: skip
    # The simulation is chaotic: the same decompositions and protocol give most stored SDs to 1e-5
    # mm, but the hand's vertices rounded unlike in the build move borderline trajectories by up to
    # ~100 mm. Measured here: 60 % of the library (42 of the 64 sampled) within 0.01 mm; 39 of
    # 1522 grasps (none of the 64) now over the 20 mm filter. Hence SD jittered by default.
    sd_ok = f.passes(lib.pd[idx], lib.siv[idx], lib.tips[idx], torch.as_tensor(sd))["SD"]
    assert sd_ok.double().mean() >= 0.95
    diff = np.abs(sd - lib.sd[idx].double().numpy())
    assert (diff < 0.01).mean() >= 0.5


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

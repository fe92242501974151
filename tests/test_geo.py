"""GeO: the per-sample optimiser against torch's own, batch independence, skipping, baselines,
robustness, and recovery of perturbed grasps."""

import math

import pytest
import torch

from miho import cpf as C
from miho import geo, optim
from miho.amano import curl_pose
from miho.anchors import hand_regions
from miho.hand import load_hand
from miho.mesh import Meshes, box, cylinder, icosphere


@pytest.fixture(scope="module")
def hand():
    return load_hand(dtype=torch.float64)


def _scene(hand, batch, seed=0, sizes=None):
    """Hands near the palm side of cylinders / spheres, with the ground-truth-like CPF of a
    slightly closer placement, so that every sample has contact to recover."""
    g = torch.Generator().manual_seed(seed)
    shapes = []
    for b in range(batch):
        if (sizes or [b])[b % len(sizes or [b])] % 2 == 0:
            v, f = cylinder(0.03 + 0.003 * b, 0.12, segments=32, rings=12, dtype=torch.float64)
        else:
            v, f = icosphere(0.035 + 0.002 * b, 2, dtype=torch.float64)
        shapes.append((v + torch.tensor([-0.05, 0.085, 0.0], dtype=torch.float64), f))
    objs = Meshes.from_list(shapes, dtype=torch.float64)
    pose = curl_pose(hand, 0.3).expand(batch, -1, -1) + 0.05 * torch.randn(
        batch, 16, 3, generator=g, dtype=torch.float64
    )
    trans = 0.004 * torch.randn(batch, 3, generator=g, dtype=torch.float64)
    target = hand(pose, trans=trans + torch.tensor([-0.006, 0.0, 0.0], dtype=torch.float64))
    field = C.annotate(target.vertices, objs.verts, hand_regions(hand), objs.vert_mask)
    return pose, trans, objs, field


def test_batch_adam_matches_torch_adam():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    lrs = torch.tensor([1e-2, 3e-2, 1e-3], dtype=torch.float64)
    p = torch.zeros(3, 4, 2, dtype=torch.float64, requires_grad=True)
    opt = optim.BatchAdam([p], [0.5], lrs.clone())
    refs = [torch.zeros(4, 2, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    topts = [torch.optim.Adam([r], lr=float(lr) * 0.5) for r, lr in zip(refs, lrs)]
    for _ in range(25):
        ((p - target) ** 3).abs().sum().backward()
        opt.step()
        for i, (r, o) in enumerate(zip(refs, topts)):
            o.zero_grad()
            ((r - target[i]) ** 3).abs().sum().backward()
            o.step()
    for i in range(3):
        assert torch.allclose(p[i], refs[i], atol=1e-12)


def test_batch_plateau_matches_torch_scheduler():
    seqs = [
        [1.0 - 0.01 * t for t in range(100)],  # always improving: lr never drops
        [1.0] * 100,  # flat: drops every 21 steps
        [1.0 / (1 + t) if t < 30 else 0.5 for t in range(100)],
    ]
    lr = torch.full((3,), 1e-2, dtype=torch.float64)
    ours = optim.BatchPlateau(lr, factor=0.5, patience=20, threshold=1e-4, min_lr=1e-5)
    for s, seq in enumerate(seqs):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=1e-2)
        ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=20, threshold=1e-4, min_lr=1e-5)
        lrs = []
        for v in seq:
            ref.step(v)
            lrs.append(opt.param_groups[0]["lr"])
        seqs[s] = (seq, lrs)
    for t in range(100):
        ours.step(torch.tensor([seq[t] for seq, _ in seqs], dtype=torch.float64))
        for s, (_, lrs) in enumerate(seqs):
            assert lr[s].item() == pytest.approx(lrs[t], rel=1e-12), (s, t)


def test_result_does_not_depend_on_the_batch(hand):
    pose, trans, objs, field = _scene(hand, 3, sizes=[0, 1, 2])
    kw = dict(iterations=30, mode="hand-object")
    together = geo.optimize(hand, pose, objs, field, trans=trans, **kw)
    for i in range(3):
        alone = geo.optimize(hand, pose[i : i + 1], objs[i], field[i], trans=trans[i : i + 1], **kw)
        n = int(objs.vert_mask[i].sum())
        assert torch.allclose(alone.hand_verts[0], together.hand_verts[i], atol=1e-9)
        assert torch.allclose(alone.obj_verts[0, :n], together.obj_verts[i, :n], atol=1e-9)
        assert torch.allclose(alone.lr[0], together.lr[i])


def test_skips_samples_without_contact(hand):
    pose, trans, objs, field = _scene(hand, 2)
    field.vc[1] = 0.0  # no contact at all: keep the input pose
    res = geo.optimize(hand, pose, objs, field, trans=trans, iterations=15)
    assert res.skipped.tolist() == [False, True]
    assert torch.equal(res.pose[1], pose[1]) and torch.equal(res.trans[1], trans[1])
    assert torch.equal(res.obj_verts[1], objs.verts[1]) and res.lr[1] == 0
    assert not torch.allclose(res.pose[0], pose[0])


@pytest.mark.parametrize("name", list(geo.BASELINES))
def test_contact_heuristics_optimise(hand, name):
    """Every setting reduces L_anat (the start has noisy joints) and moves the hand; without the
    repulsion (whose 20 mm cut-off makes E_rpl jump when pairs enter its range) the total energy
    decreases. (Recovering a grasp is tested on real grasps below.)"""
    pose, trans, objs, field = _scene(hand, 2)
    res = geo.optimize(hand, pose, objs, field, trans=trans, iterations=40, **geo.BASELINES[name])
    h = res.history
    assert h["total"].shape == (40, 2) and (h["anat"][-1] < 0.5 * h["anat"][0]).all()
    assert ((res.hand_verts - hand(pose, trans=trans).vertices).norm(dim=-1).mean(-1) > 1e-4).all()
    if name == "cpf without E_rpl":
        assert (h["repulsion"] == 0).all() and (h["total"][-1] < h["total"][0]).all()


def test_k_rpl_scales_the_repulsion(hand):
    pose, trans, objs, field = _scene(hand, 1)
    a = geo.optimize(hand, pose, objs, field, trans=trans, iterations=1, k_rpl=1e-3)
    b = geo.optimize(hand, pose, objs, field, trans=trans, iterations=1, k_rpl=4e-3)
    assert b.history["repulsion"][0].item() == pytest.approx(4 * a.history["repulsion"][0].item(), rel=1e-9)


def test_trajectory_and_history(hand):
    pose, trans, objs, field = _scene(hand, 2)
    res = geo.optimize(hand, pose, objs, field, trans=trans, iterations=30, record_every=10)
    assert res.trajectory["hand"].shape == (4, 2, hand.num_vertices, 3)
    assert res.trajectory["object"].shape == (4, *objs.verts.shape)
    assert torch.allclose(res.trajectory["hand"][-1], res.hand_verts)
    assert set(res.history) == {"total", "contact", "repulsion", "anat", "offset"}


def test_hand_mode_keeps_the_object(hand):
    pose, trans, objs, field = _scene(hand, 2)
    res = geo.optimize(hand, pose, objs, field, trans=trans, iterations=20, mode="hand")
    assert torch.equal(res.obj_verts, objs.verts) and torch.equal(res.obj_trans, torch.zeros(2, 3, dtype=torch.float64))


def test_fuzz_random_poses_and_degenerate_objects(hand):
    """No NaN or inf for wild poses and degenerate objects: a flat box and a one-sided fan."""
    g = torch.Generator().manual_seed(3)
    flat_v, flat_f = box((0.08, 0.08, 0.0), divisions=4, dtype=torch.float64)
    ang = torch.linspace(0, 2 * torch.pi, 9, dtype=torch.float64)[:-1]
    fan_v = torch.cat((torch.zeros(1, 3, dtype=torch.float64), 0.04 * torch.stack((ang.cos(), ang.sin(), 0 * ang), 1)))
    fan_f = torch.tensor([(0, 1 + k, 1 + (k + 1) % 8) for k in range(8)])
    offset = torch.tensor([-0.04, 0.08, 0.0], dtype=torch.float64)
    objs = Meshes.from_list([(flat_v + offset, flat_f), (fan_v + offset, fan_f)], dtype=torch.float64)
    for trial in range(3):
        pose = 1.5 * torch.randn(2, 16, 3, generator=g, dtype=torch.float64)
        trans = 0.03 * torch.randn(2, 3, generator=g, dtype=torch.float64)
        field = C.CPF(torch.rand(2, objs.verts.shape[1], generator=g, dtype=torch.float64),
                      torch.randint(0, 17, (2, objs.verts.shape[1]), generator=g),
                      torch.rand(2, objs.verts.shape[1], generator=g, dtype=torch.float64))  # fmt: skip
        for name in geo.BASELINES:
            res = geo.optimize(hand, pose, objs, field, trans=trans, iterations=10, **geo.BASELINES[name])
            for t in (res.pose, res.trans, res.hand_verts, res.obj_verts, res.history["total"]):
                assert torch.isfinite(t).all(), (trial, name)


def test_non_finite_or_misshapen_inputs_raise(hand):
    pose, trans, objs, field = _scene(hand, 1)
    bad = pose.clone()
    bad[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        geo.optimize(hand, bad, objs, field, trans=trans, iterations=1)
    with pytest.raises(ValueError, match="NaN"):
        geo.optimize(hand, pose, objs, field, trans=torch.full((1, 3), float("inf"), dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        objs.with_verts(objs.verts * float("nan"))
    with pytest.raises(ValueError, match="batch"):
        geo.optimize(hand, pose.expand(2, -1, -1), objs, field, iterations=1)
    with pytest.raises(ValueError, match="needs a CPF"):
        geo.optimize(hand, pose, objs, None, iterations=1)
    with pytest.raises(ValueError, match="mode"):
        geo.GeOConfig(mode="object")


def test_recovers_perturbed_ground_truth_grasps():
    """Acceptance (small): from a 10-20 mm perturbation of ground-truth grasps, GeO driven by the
    ground-truth CPF lowers PD and SIV and brings the hand vertex error below the start's
    (>= 90 % of the batch; the benchmark `miho bench recovery` runs 32 pairs)."""
    from miho import experiments, synthesis

    hand = load_hand()
    objects, pose, trans = synthesis.example_grasps(hand, names=("cylinder", "ball"), iterations=150)
    rec = experiments.recovery_experiment(hand, objects, pose, trans, repeats=2, resolution=32, iterations=150)
    assert rec.success().float().mean() >= 0.9, (rec.before.to_markdown(True), rec.after.to_markdown(True))
    assert (rec.after["HE"] < rec.before["HE"]).all()
    assert rec.after.mean()["PD"] < 0.6 * rec.before.mean()["PD"]


def test_shape_can_be_optimised(hand):
    pose, trans, objs, field = _scene(hand, 2)
    fixed = geo.optimize(hand, pose, objs, field, trans=trans, iterations=20)
    free = geo.optimize(hand, pose, objs, field, trans=trans, iterations=20, optimize_shape=True)
    assert torch.equal(fixed.shape, torch.zeros_like(fixed.shape))
    assert free.shape.abs().sum() > 0 and torch.isfinite(free.shape).all()
    again = hand(free.pose, free.shape, free.trans).vertices
    assert torch.allclose(again, free.hand_verts, atol=1e-9)


def test_repulsion_sums_every_pair_in_range_or_the_nearest(hand):
    """E_rpl at GeO's first iteration is Eq. 2-3 summed over every pair within t_rpl (the exact
    dense :func:`miho.cpf.repulsion_energy`), or over each object vertex's 50 nearest hand
    vertices with ``rpl_neighbours=50``; the cap drops pairs in range here, so it is lower."""
    pose, trans, objs, field = _scene(hand, 3, sizes=[0, 1, 2])
    verts = hand(pose, trans=trans).vertices
    exact = C.repulsion_energy(verts, objs.verts, objs.normals(), objs.vert_mask)
    nearest = C.repulsion_energy(verts, objs.verts, objs.normals(), objs.vert_mask, neighbours=50)
    every = geo.optimize(hand, pose, objs, field, trans=trans, iterations=1, mode="hand")
    capped = geo.optimize(hand, pose, objs, field, trans=trans, iterations=1, mode="hand", rpl_neighbours=50)
    assert torch.allclose(every.history["repulsion"][0], exact, rtol=1e-12)
    assert torch.allclose(capped.history["repulsion"][0], nearest, rtol=1e-12)
    assert (nearest < 0.9 * exact).all()
    pairs = geo.pairs_within(verts, objs.verts, objs.vert_mask, 0.03)
    d = torch.cdist(objs.verts, verts)
    assert pairs.shape[1] == int(((d < 0.03) & objs.vert_mask[..., None]).sum())
    b, o, h = pairs  # sample, flat object index b N + j, flat hand index b V + i
    assert (d[b, o - b * objs.verts.shape[1], h - b * verts.shape[1]] < 0.03).all()


def test_repulsion_pairs_are_never_missed_between_refreshes(hand):
    """The default search (24 mm, redone when the vertices drift by more than the 4 mm margin)
    gives the run that searches every pair within 30 mm at every iteration (the exhaustive
    reference), with a fast learning rate that moves the hand by millimetres an iteration."""
    pose, trans, objs, field = _scene(hand, 2, sizes=[0, 1])
    kw = dict(trans=trans, iterations=25, mode="hand-object", lr=0.05)
    reference = geo.optimize(hand, pose, objs, field, rpl_refresh=1, rpl_search=0.03, **kw)
    default = geo.optimize(hand, pose, objs, field, **kw)
    moved = (default.hand_verts - hand(pose, trans=trans).vertices).norm(dim=-1).amax(1)
    assert float(moved.min()) > 0.004  # more than the margin: the drift check had to search again
    assert torch.allclose(default.hand_verts, reference.hand_verts, atol=1e-9)
    assert torch.allclose(default.history["repulsion"], reference.history["repulsion"], rtol=1e-9)


def test_refinement_stats_count_samples():
    from miho import experiments
    from miho.metrics import MetricTable

    def table(he, pd, siv):
        return MetricTable({k: torch.tensor(v, dtype=torch.float64) for k, v in (("HE", he), ("PD", pd), ("SIV", siv))})

    truth = table([0, 0, 0, 0], [1.0, 2.0, 0.0, 3.0], [0.1, 0.2, 0.0, 0.3])
    start = table([10, 12, 9, 11], [0.0, 5.0, 0.0, 2.0], [0.0, 4.0, 0.0, 0.5])
    after = table([8, 13, 9, 5], [2.0, 1.0, 0.2, 4.0], [0.3, 1.0, 0.0, 0.4])
    got = experiments.refinement_stats(truth, start, after)
    # by hand: samples 0, 2, 3 start no deeper than the truth; 0 and 3 end more than 0.5 mm below it
    want = {"HE fell": 0.5, "PD fell": 0.25, "SIV fell": 0.5, "PD rose": 0.75, "SIV rose": 0.25,
            "PD above truth": 0.5, "start outside": 0.75, "overshoot": 2 / 3}  # fmt: skip
    assert got == pytest.approx(want)
    assert experiments.refinement_stats(truth, start, after, pd_tolerance=1.5)["overshoot"] == pytest.approx(0.0)
    deep = table([1, 1, 1, 1], [9.0] * 4, [1.0] * 4)
    assert math.isnan(experiments.refinement_stats(truth, deep, after)["overshoot"])
    with pytest.raises(ValueError, match="start has 2 samples"):
        experiments.refinement_stats(truth, table([1, 2], [0, 0], [0, 0]), after)
    with pytest.raises(ValueError, match=r"after lacks the metrics \['SIV'\]"):
        experiments.refinement_stats(truth, start, MetricTable({"HE": after["HE"], "PD": after["PD"]}))


def test_disturbed_grasps_end_no_deeper_than_with_the_capped_repulsion():
    """GeO from SynthHO's disturbances (random directions, the official jitter) with the
    ground-truth CPF, hand-object mode: with E_rpl over every pair in range (Eq. 3) the hands end
    shallower and intersect less than with each object vertex's 50 nearest hand vertices, whose
    push saturates once the hand touches (issue 10); the per-sample stats match the tables."""
    from miho import experiments
    from miho.bench import ablation_batch

    ds, batch = ablation_batch(4)
    settings = {"capped": dict(rpl_neighbours=50), "every pair": {}}
    study = experiments.ablation_study(ds.hand, batch, settings, iterations=60, resolution=24)
    capped, every = study.runs["capped"].mean(), study.runs["every pair"].mean()
    assert every["PD"] < capped["PD"] - 0.5 and every["SIV"] < capped["SIV"]
    stats = study.stats()
    for name, run in study.runs.items():
        assert stats[name]["PD fell"] == pytest.approx(float((run["PD"] < study.start["PD"]).double().mean()))
        above = (run["PD"] > study.truth["PD"] + 0.5).double().mean()
        assert stats[name]["PD above truth"] == pytest.approx(float(above))
    lines = study.stats_markdown().splitlines()
    assert lines[0].startswith("| setting | HE fell (%)") and len(lines) == 4


def test_obman_losses_match_a_trimesh_inside_test_and_the_formulas(hand):
    """Hasson et al.'s terms (what ObMan* trains with) against an independent evaluation: trimesh's
    inside test, brute-force nearest vertices, and the two formulas written out."""
    import trimesh

    v, f = icosphere(0.03, 3, dtype=torch.float64)
    out = hand(curl_pose(hand, 0.5))
    palm = out.vertices[0, hand_regions(hand).labels == 0].mean(0)  # region 0: the palm
    centres = [palm + torch.tensor(c, dtype=torch.float64) for c in ([0.0, 0.02, 0.0], [0.0, 0.038, 0.0])]
    objs = Meshes.from_list([(v + c, f) for c in centres], dtype=torch.float64)
    verts = out.vertices.expand(2, -1, -1).clone().requires_grad_(True)
    attraction, repulsion = geo.obman_losses(hand, verts, objs)
    cfg = geo.GeOConfig()
    prone = geo.contact_prone_regions(hand_regions(hand))
    for b, c in enumerate(centres):
        hv = out.vertices[0]
        inside = torch.as_tensor(trimesh.Trimesh((v + c).numpy(), f.numpy()).contains(hv.numpy()))
        near = torch.cdist(hv, v + c).min(1).values
        want_rep = (cfg.obman_r * torch.tanh(near[inside] / cfg.obman_r)).sum()
        d = torch.stack([near[r].min() for r in prone])
        want_att = torch.where(d < cfg.obman_threshold, cfg.obman_alpha * torch.tanh(d / cfg.obman_alpha), 0.0).sum()
        assert float(repulsion[b].detach()) == pytest.approx(float(want_rep), rel=1e-6, abs=1e-9)
        assert float(attraction[b].detach()) == pytest.approx(float(want_att), rel=1e-6, abs=1e-9)
    (attraction.sum() + repulsion.sum()).backward()
    assert verts.grad.abs().sum() > 0  # differentiable in the hand
    attraction, repulsion = attraction.detach(), repulsion.detach()
    assert bool((attraction > 0).all())  # both spheres within reach of some region
    assert float(repulsion[0]) > float(repulsion[1]) >= 0  # the sphere sunk into the palm is penetrated more
    with pytest.raises(ValueError, match="hand_verts"):
        geo.obman_losses(hand, verts[:, :10], objs)

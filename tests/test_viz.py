"""Figures and widgets of the book: content, units (mm) and the live callbacks."""

import numpy as np
import pytest
import torch

from miho import amano
from miho.anchors import NUM_REGIONS, hand_regions
from miho.hand import load_hand
from miho.tables import markdown_table
from miho.viz import hand_figures as hf
from miho.viz import plot


@pytest.fixture(scope="module")
def hand():
    return load_hand()


@pytest.fixture(scope="module")
def regions(hand):
    return hand_regions(hand)


def test_mesh_trace_in_millimetres(hand):
    tr = plot.mesh_trace(hand.template, hand.faces)
    np.testing.assert_allclose(np.asarray(tr.x), hand.template[:, 0].numpy() * 1000, rtol=1e-6)
    assert list(tr.i[:3]) == hand.faces[:3, 0].tolist()
    fig = plot.figure([tr])
    assert fig.layout.scene.xaxis.title.text == "x (mm)" and fig.layout.scene.aspectmode == "data"


def test_segments_and_frames(hand):
    rest = amano.rest_frames(hand)[0]
    traces = plot.frame_traces(hand.joints, rest, length=0.01)
    assert [t.name for t in traces] == ["twist", "splay", "bend"]
    twist = np.asarray(traces[0].x, dtype=float).reshape(-1, 3)  # start, end, gap per joint
    np.testing.assert_allclose(twist[:, 1] - twist[:, 0], 10 * rest[:, 0, 0].numpy(), atol=1e-4)


def test_slider_figures_have_one_frame_per_step(hand, regions):
    fig = hf.shape_slider_figure(hand, "finger_length", values=np.linspace(-1, 1, 3))
    assert len(fig.frames) == 3 and len(fig.layout.sliders[0].steps) == 3
    longer = np.asarray(fig.frames[2].data[0].y, dtype=float).max()
    shorter = np.asarray(fig.frames[0].data[0].y, dtype=float).max()
    assert longer > shorter + 10  # mm: longer fingers reach farther along +y
    fig = hf.joint_slider_figure(hand, 2, "twist", degrees=[-30.0, 0.0, 30.0])
    labels = [s.label for s in fig.layout.sliders[0].steps]
    assert labels[1].endswith("L_anat 0.00") and labels[2].endswith("L_anat 0.52")  # 30 deg = 0.52 rad
    assert fig.layout.sliders[0].active == 1  # starts at 0 deg: the figure shows the rest hand
    np.testing.assert_allclose(np.asarray(fig.data[0].x, dtype=float), 1000 * hand.template[:, 0].numpy(), atol=1e-3)
    assert len(hf.region_picker_figure(hand, regions).frames) == NUM_REGIONS


def test_region_and_anchor_figures(hand, regions):
    fig = hf.regions_figure(hand, regions)
    assert len(fig.data[0].vertexcolor) == hand.num_vertices
    assert len(fig.data[1].x) == 32
    fig = hf.anchor_rays_figure(hand, regions)
    names = [t.name for t in fig.data]
    assert "rays" in names and "anchors" in names
    rows = hf.anchor_table(regions)
    assert sum(r[2] for r in rows) == 32 and sum(r[1] for r in rows) == hand.num_vertices


def test_anat_curve_and_limits(hand):
    fig = hf.anat_curve_figure(hand, 2, degrees=np.array([0.0, 45.0, 100.0]))
    twist, splay, bend = (np.asarray(t.y) for t in fig.data)
    np.testing.assert_allclose(bend, [0.0, 0.0, np.deg2rad(10)], atol=1e-5)
    np.testing.assert_allclose(twist, np.deg2rad([0.0, 45.0, 100.0]), atol=1e-5)
    assert hf.limits_rows()[12][0] == "13: thumb CMC"


def test_fit_comparison_figure(hand):
    target = hand(hf.curl_pose(hand, 0.3)).joints21
    pose = hand.zero_pose()
    twisted = pose.clone()
    twisted[0, 2] = amano.rest_frames(hand)[0, 2, :, 0] * 0.5  # 0.5 rad twist of the index PIP
    fig = hf.fit_comparison_figure(hand, target, twisted, pose, torch.zeros(1, 3), torch.zeros(1, 3), ["a", "b"])
    assert len(fig.data) == 4
    free, kept = np.asarray(fig.data[0].intensity), np.asarray(fig.data[2].intensity)
    assert free.max() == pytest.approx(np.rad2deg(0.5), rel=1e-4) and kept.max() == 0


def test_joint_pose_rejects_the_wrist(hand):
    with pytest.raises(ValueError, match="joint must be in 1..15"):
        hf.joint_pose(hand, 0, (0.0, 0.0, 10.0))


def test_widgets_build_and_draw(hand, regions, monkeypatch):
    widgets = pytest.importorskip("miho.viz.widgets")
    import plotly.io as pio

    monkeypatch.setattr(pio.renderers, "default", "notebook")  # as the chapters set it
    assert widgets.joint_explorer(hand) is not None
    assert widgets.hand_explorer(hand) is not None
    assert widgets.region_explorer(hand, regions) is not None
    box = widgets.joint_explorer(hand)  # drawn at once, into the output's state (no capture while executing)
    out = box.children[-1]
    assert [o["output_type"] for o in out.outputs] == ["stream", "display_data"]
    assert out.outputs[0]["text"].startswith("L_anat = ")
    assert "plotly" in out.outputs[1]["data"]["text/html"]
    fig, text = widgets.draw_joint(hand, 2, 30.0, 0.0, 45.0)
    assert text == "L_anat = 0.524" and len(fig.data) == 4
    _, text = widgets.draw_region(hand, regions, 16)
    assert text.startswith("carpal:") and text.endswith("3 anchor(s)")
    _, text = widgets.draw_hand(hand, 0.0, finger_length=1.0)
    assert float(text.split(": ")[1].split()[0]) > 1000 * float(hand.template[:, 1].max() - hand.template[:, 1].min())


def test_markdown_table():
    assert markdown_table(["a", "b"], [(1, 0.123)]) == "| a | b |\n|---|---|\n| 1 | 0.12 |"


def test_ablation_figures_show_each_setting_and_the_k_rpl_curve():
    from miho.experiments import Ablation
    from miho.metrics import MetricTable
    from miho.viz import geo_figures as gf

    def table(x):
        cols = {m: torch.tensor([x, x + 2.0], dtype=torch.float64) for m in ("HE", "OE", "PD", "SIV", "DD")}
        return MetricTable(cols, {m: "cm^3" if m == "SIV" else "mm" for m in cols})

    runs = {"CPF (full)": table(1.0), "k_rpl = 8.0e-03": table(3.0), "k_rpl = 2.0e-04": table(5.0)}
    study = Ablation(table(0.0), table(10.0), runs, {k: 1.0 for k in runs})
    fig = gf.ablation_figure(study)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 5 and list(bars[0].x) == list(runs) and list(bars[3].y) == [2.0, 4.0, 6.0]  # SIV means
    assert {s.y0 for s in fig.layout.shapes} == {1.0, 11.0}  # the truth and start means
    curve = gf.k_rpl_figure(study)
    assert list(curve.data[0].x) == [2e-4, 8e-3] and list(curve.data[0].y) == [6.0, 4.0]  # HE, sorted by k_rpl
    assert curve.layout.xaxis.type == "log"


# ---------------------------------------------------------------------- metric figures
def test_metric_figures_draw_what_the_metrics_measure(hand):
    """Each figure shows the metric's own elements (inside vertices, intersecting voxels, tip to
    surface segments) and its value in the title."""
    from miho import metrics
    from miho.geometry import point_triangle_distance
    from miho.mesh import Meshes, icosphere
    from miho.viz import metric_figures as mf
    from miho.voxels import intersection_voxels

    hv = hand.template.double()
    ov, of = icosphere(0.015, 2, dtype=torch.float64)
    ov = ov + hv[100]  # a ball on a hand vertex: part of the hand inside it
    objs = Meshes.from_list([(ov, of)], dtype=torch.float64)
    inside, depth = metrics.vertex_penetration(hv[None], objs)
    fig = mf.penetration_figure(hv, hand.faces, ov, of)
    assert len(fig.data[2].x) == int(inside.sum()) > 0
    np.testing.assert_allclose(np.asarray(fig.data[2].x, dtype=float), 1000 * hv[inside[0], 0].numpy())
    pd = metrics.penetration_depth(hv[None], objs).item()
    assert f"penetration depth: {pd:.1f} mm ({int(inside.sum())} vertices inside)" == fig.layout.title.text

    fig = mf.intersection_figure(hand, hv, ov, of, resolution=20)
    found = intersection_voxels(*hand.closed(hv[None]), objs, resolution=20)
    siv = metrics.solid_intersection_volume(*hand.closed(hv[None]), objs, resolution=20).item()
    assert len(fig.data[2].x) == found.counts().item() > 0
    assert fig.layout.title.text.startswith(
        f"solid intersection volume: {siv:.2f} cm^3 ({found.counts().item()} voxels"
    )

    tips = torch.zeros(hand.num_vertices, dtype=torch.bool)
    tips[::50] = True
    fig = mf.disjointedness_figure(hv, hand.faces, tips, ov, of, every=1)
    seg = np.asarray(fig.data[2].x, dtype=float).reshape(-1, 3), np.asarray(fig.data[2].y, dtype=float).reshape(-1, 3)
    seg_z = np.asarray(fig.data[2].z, dtype=float).reshape(-1, 3)
    ends = np.stack((seg[0][:, 1], seg[1][:, 1], seg_z[:, 1]), -1) / 1000  # the closest surface points, metres
    on_surface, _ = point_triangle_distance(torch.as_tensor(ends)[None], objs.triangles())
    assert on_surface.max() < 1e-9  # every segment ends on the object's surface...
    dist, _ = point_triangle_distance(hv[tips][None], objs.triangles())
    starts = np.stack((seg[0][:, 0], seg[1][:, 0], seg_z[:, 0]), -1) / 1000
    np.testing.assert_allclose(np.linalg.norm(ends - starts, axis=1), dist[0].numpy(), atol=1e-9)  # ...at the closest
    dd = metrics.disjointedness(hv[None], tips, objs).item()
    assert fig.layout.title.text.startswith(f"disjointedness: {dd:.1f} mm (mean over {int(tips.sum())} ")


# ---------------------------------------------------------------------- MIHO end to end
@pytest.fixture(scope="module")
def pipeline_run(hand):
    """Two held-out samples through untrained tiny networks and a few GeO iterations (the plumbing
    of the figures, not the quality of the networks)."""
    from miho.nets.honet import build_honet
    from miho.nets.picr import build_picr
    from miho.pipeline import Reconstruction, estimate, refine
    from miho.train.picr_data import build_picr_data
    from miho.viz import pipeline_figures as pe

    torch.manual_seed(0)
    data = build_picr_data("val", views=1, size=64, grasps=2, workers=0, progress=False)
    b = data.batch(torch.arange(2))
    honet, picr = build_honet("tiny").eval(), build_picr("tiny").eval()
    objects, _ = pe.batch_objects(b)
    coarse, posed, field = estimate(b["image"], b["K"], objects, honet, picr, hand)
    refined = refine(coarse, posed, field, "hand-object", hand, 0.3, 4, record_every=2)
    return dict(data=data, b=b, honet=honet, picr=picr, recon=Reconstruction(coarse, posed, field, refined))


def test_project_uses_the_intrinsics():
    from miho.viz.pipeline_figures import project

    K = torch.tensor([[100.0, 0.0, 32.0], [0.0, 120.0, 30.0], [0.0, 0.0, 1.0]])
    uv = project(torch.tensor([[0.0, 0.0, 0.5], [0.05, -0.1, 0.5], [0.0, 0.0, -0.5]]), K)
    np.testing.assert_allclose(uv[:2], [[32.0, 30.0], [42.0, 6.0]], atol=1e-9)  # 100 * 0.05 / 0.5 = 10 px right
    assert np.isnan(uv[2]).all()  # behind the camera
    with pytest.raises(ValueError, match="project needs"):
        project(torch.zeros(4, 2), K)


def test_overlay_figure_projects_each_layer(pipeline_run):
    from miho.viz.pipeline_figures import overlay_figure, project

    b, r = pipeline_run["b"], pipeline_run["recon"]
    hand_verts = r.coarse["hand_verts"][0]
    fig = overlay_figure(b["image"][0], b["K"][0], {"hand": (hand_verts, "red"), "object": (b["obj_verts"][0], "blue")},
                         max_points=50)  # fmt: skip
    assert [t.type for t in fig.data] == ["image", "image", "scatter", "scatter"]
    assert fig.data[0].x0 == 0.5  # pixel centres at integer + 0.5, as the intrinsics
    hand_trace = fig.data[2]
    assert hand_trace.name == "hand" and len(hand_trace.x) == 50
    np.testing.assert_allclose([hand_trace.x[0], hand_trace.y[0]], project(hand_verts[:1], b["K"][0])[0], rtol=1e-6)
    obj = project(b["obj_verts"][0][b["obj_mask"][0]], b["K"][0])
    assert (obj > 0).all() and (obj < 64).all()  # the true object is in the image it was rendered into
    assert fig.layout.xaxis.title.text == "u (pixels)" and list(fig.layout.xaxis.range) == [0, 64]


def test_field_figure_paints_the_probabilities(pipeline_run, hand):
    from miho.viz.pipeline_figures import field_figure

    b, r = pipeline_run["b"], pipeline_run["recon"]
    n, nf = int(b["obj_mask"][0].sum()), int(b["obj_face_mask"][0].sum())
    fig = field_figure(r.objects.verts[0, :n], b["obj_faces"][0, :nf], r.field.vc[0, :n], r.coarse["hand_verts"][0],
                       hand.faces, true_vc=b["vc"][0, :n])  # fmt: skip
    assert len(fig.data) == 4 and fig.data[0].showscale and not fig.data[2].showscale
    np.testing.assert_allclose(np.asarray(fig.data[0].intensity), r.field.vc[0, :n].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fig.data[2].intensity), b["vc"][0, :n].numpy())
    assert fig.layout.scene.xaxis.title.text == "x (mm)" and fig.data[0].cmax == 1.0
    assert len(field_figure(r.objects.verts[0, :n], b["obj_faces"][0, :nf], r.field.vc[0, :n]).data) == 1


def test_score_and_metrics_markdown(pipeline_run, hand):
    from miho import metrics
    from miho.viz.pipeline_figures import metrics_markdown, score, take

    b, r = pipeline_run["b"], pipeline_run["recon"]
    tables = score(hand, r, b, resolution=16, truth=True)
    assert list(tables) == ["HoNet", "after GeO", "truth"]
    truth = hand(b["hand_pose"], b["hand_shape"], b["hand_trans"]).vertices
    expected = metrics.mpvpe(r.coarse["hand_verts"], truth)
    np.testing.assert_allclose(tables["HoNet"]["HE"].numpy(), expected.double().numpy(), rtol=1e-5)
    assert float(tables["truth"]["HE"].abs().max()) < 1e-6 and float(tables["truth"]["OE"].abs().max()) < 1e-6
    text = metrics_markdown(tables, first="setting")
    lines = text.splitlines()
    assert lines[0].startswith("| setting | HE (mm) | OE (mm) |") and "SIV (cm^3)" in lines[0] and len(lines) == 5
    assert f"| HoNet | {tables['HoNet'].mean()['HE']:.1f} |" in text
    one = metrics_markdown({"HoNet": tables["HoNet"]}, sample=1)
    assert f"| HoNet | {float(tables['HoNet']['HE'][1]):.1f} |" in one
    with pytest.raises(ValueError):
        metrics_markdown({})
    row = take(tables["HoNet"], 1)
    assert len(row) == 1 and row.units == tables["HoNet"].units and row.mean()["HE"] == float(tables["HoNet"]["HE"][1])


def test_samples_slider_and_trajectory(pipeline_run, hand):
    from miho.viz.pipeline_figures import samples_slider_figure

    b, r = pipeline_run["b"], pipeline_run["recon"]
    truth = hand(b["hand_pose"], b["hand_shape"], b["hand_trans"]).vertices
    fig = samples_slider_figure(hand.faces, r, truth, labels=["a", "b"])
    assert len(fig.frames) == 2 and [s.label for s in fig.layout.sliders[0].steps] == ["a", "b"]
    assert len(fig.data) == 6 and all(len(f.data) == 6 for f in fig.frames)
    refined_hand = fig.frames[1].data[3]
    np.testing.assert_allclose(np.asarray(refined_hand.x), 1000 * r.refined.hand_verts[1, :, 0].numpy(), rtol=1e-5)
    assert r.refined.trajectory["hand"].shape[0] == 3  # record_every=2 over 4 iterations: 0, 2 and the end
    with pytest.raises(ValueError, match="labels"):
        samples_slider_figure(hand.faces, r, truth, labels=["a"])


def test_run_sample_and_explorer(pipeline_run, hand):
    from miho.viz import pipeline_figures as pe

    s = pipeline_run
    fig, text = pe.run_sample(s["data"], 1, "hand", s["honet"], s["picr"], hand, t_vc=0.3, iterations=2, resolution=16)
    names = pe.sample_names(s["data"])
    assert len(names) == 2 and names[1] == f"1: {s['data'].names[int(s['data'].obj_of_grasp[s['data'].grasp[1]])]}"
    assert len(fig.data) == 5 and text.startswith(f"sample {names[1]}: GeO in hand mode") and "| after GeO |" in text
    with pytest.raises(ValueError, match="index"):
        pe.run_sample(s["data"], 2, "hand", s["honet"], s["picr"], hand, t_vc=0.3)
    pytest.importorskip("ipywidgets")
    box = pe.pipeline_explorer(s["data"], s["honet"], s["picr"], hand, t_vc=0.3, iterations=2, resolution=16)
    controls = box.children[0].children + box.children[1].children
    assert [c.description for c in controls] == ["sample", "GeO mode", "iterations", "Run MIHO"]
    controls[2].value = 0  # no GeO iterations: quick
    box.run()

"""The chapter toolkit: rows with one vocabulary, intervals and claims as rows, parameters-only saving."""

import numpy as np
import pandas as pd
import pytest
import yaml

from sbir_core import chapter as C
from sbir_core.evaluation import Evaluation
from sbir_core.stats import Interval


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path))
    return tmp_path


def test_rows_use_the_split_vocabulary_and_a_setting_column(results):
    ch = C.Chapter("04_triplet_baseline", "ci", {})
    ch.add("style_world", "triplet_sn", "acc_at_1", 0.2, "val_selected", C.setting(style_gap=2.0), "test_unseen", 0)
    ch.add("style_world", "triplet_sn", "diff_acc_at_1", 0.05, "val_selected", "", "test_seen - test_unseen")
    with pytest.raises(ValueError, match="split"):
        ch.add("style_world", "triplet_sn", "acc_at_1", 0.2, split="test_unseen_gap_2")
    df = ch.frame()
    assert df["setting"].tolist()[0] == "style_gap=2" or "style_gap=2" in df["setting"].tolist()
    assert C.setting(style_gap=2.0, k=5) == "k=5,style_gap=2"


def test_intervals_and_claims_become_rows(results):
    import numpy as np

    from sbir_core.stats import Arm

    ch = C.Chapter("06_stylemeup", "ci", {})
    iv = Interval(0.05, 0.01, 0.09, 0.02, 0.01, 0.015, 10.0, 5, 300)
    ch.add_interval(iv, "style_world", "triplet_sn", "acc_at_1", "val_selected", "", "test")
    rng = np.random.default_rng(0)
    cl = {"instance": np.arange(300) // 3}
    a = Arm((rng.random((2, 300)) < 0.5).astype(float), cl, (0, 1), name="StyleMeUp")
    b = Arm((rng.random((3, 300)) < 0.3).astype(float), cl, (0, 1, 2), name="Triplet-SN")
    for x in (a, b):
        x.floors["chance"] = x.constant(0.02)
    ev = ch.claim(
        "stylemeup_beats_triplet_unseen",
        [(a, 1.0), (b, -1.0)],
        b,
        "style_world",
        "stylemeup - triplet_sn",
        "test_unseen",
        "val_selected",
    )
    assert ev.outcome == "reproduced" and ev.rel.lo > 0
    assert ev.paper_rel == pytest.approx((36.47 - 28.71) / (28.71 - 0.5))  # ShoeV2, the smaller of the two
    df = ch.frame()
    rows = df[df["setting"] == "claim=stylemeup_beats_triplet_unseen"].set_index("metric")["value"]
    assert {
        "diff_acc_at_1",
        "diff_acc_at_1_ci95_lo",
        "rel_effect",
        "rel_effect_ci95_hi",
        "paper_rel_effect",
        "mde_rel",
        "outcome",
        "fragile",
        "floor",
    } <= set(rows.index)
    assert rows["outcome"] == 2.0 and rows["rel_effect"] == pytest.approx(ev.rel.estimate)
    with pytest.raises(C.CL.ClaimError, match="not in"):
        ch.claim("no_such_claim", [(a, 1.0), (b, -1.0)], b, "style_world", "x", "test")


def test_save_records_only_the_parameters_cell(results):
    from sbir_core.book import chapter_defaults

    names = chapter_defaults("01_evaluation")
    ns = {**names, "SEED": 7, "NOT_A_PARAMETER": 1, "ROWS": [1, 2, 3]}
    ch = C.Chapter("01_evaluation", "ci", ns)
    ch.add("toy", "m", "acc_at_1", 0.5)
    folder = ch.save()
    params = yaml.safe_load((folder / "params.yaml").read_text())
    assert set(params) == set(names) and params["SEED"] == 7


def test_glue_prefixes_and_checks_keys():
    ch = C.Chapter("04_triplet_baseline", "ci", {})
    with pytest.raises(ValueError, match="lower-case"):
        ch.glue("Acc", 1.0)
    with pytest.raises(ValueError, match="chapter names"):
        C.Chapter("triplet", "ci", {})


def test_interval_of_evaluations_uses_objects_and_drawers():
    table = pd.DataFrame({"instance": np.repeat(np.arange(20), 3).astype(str), "drawer": ["a", "b", "c"] * 20})
    rng = np.random.default_rng(0)
    evals = [Evaluation("fine_grained", {}, {"rank": rng.integers(1, 6, 60)}, table) for _ in range(3)]
    iv = C.interval_of(evals, "acc_at_1")
    assert iv.n_seeds == 3 and iv.lo < iv.estimate < iv.hi
    assert iv.estimate == pytest.approx(np.mean([(e.per_query["rank"] <= 1).mean() for e in evals]))
    assert set(C.clusters(table)) == {"instance", "drawer"}
    diff = C.paired_of(evals, evals, "acc_at_1")
    assert diff.estimate == 0 and diff.se == 0
    assert "[" in C.fmt(iv) and C.fmt(diff, signed=True).startswith("0.0")


def test_published_vs_ours_puts_like_beside_like():
    import numpy as np

    from sbir_core.chapter import published_vs_ours

    ours = pd.DataFrame(
        [
            {"dataset": d, "metric": m, "value": v}
            for d in ("style_world, seen drawers", "shoes304")
            for m, v in (("acc_at_1", 0.1), ("acc_at_10", 0.5))
        ]
    )
    ours["kind"] = np.where(ours["dataset"].str.startswith("style"), "style world", "real")
    table = published_vs_ours("triplet_sn", ours.assign(protocol="val-selected", backbone="cnn"))
    assert list(table.columns) == ["Acc@1 (%)", "Acc@10 (%)", "selection", "backbone"]
    assert list(table.index.get_level_values("kind")) == ["real"] * 3 + ["style world"]  # world rows apart, last
    assert table.index.is_unique  # one row per dataset, metrics side by side
    assert table.loc[("real", "this book", "shoes304"), "Acc@1 (%)"] == "10.0"
    assert "45.65" in table.loc[("real", "published", "chairv2"), "Acc@1 (%)"]  # as the paper prints it


def test_published_vs_ours_keeps_one_method_of_a_paper_table():
    """A reference file with a paper's baselines: ``method`` shows that method's numbers only."""
    from sbir_core.chapter import published_vs_ours

    ours = pd.DataFrame(
        [
            {
                "dataset": "style world",
                "metric": "acc_at_1",
                "value": 0.1,
                "kind": "style world",
                "protocol": "val-selected",
                "backbone": "vae",
            }
        ]
    )
    everything = published_vs_ours("stylemeup", ours)
    one = published_vs_ours("stylemeup", ours, method="StyleMeUp")
    assert " / " in everything.loc[("real", "published", "chairv2"), "Acc@1 (%)"]  # the baselines mixed in
    assert one.loc[("real", "published", "chairv2"), "Acc@1 (%)"] == "62.86"
    with pytest.raises(KeyError, match="no published rows"):
        published_vs_ours("stylemeup", ours, method="nonexistent")


def test_gap_curve_figure_draws_one_line_per_model_and_the_seen_band():
    import matplotlib

    matplotlib.use("agg")
    from sbir_core.chapter import gap_curve_figure
    from sbir_core.stats import Interval

    levels = (("baseline", 0.5), ("control", 0.6))
    curve = pd.DataFrame(
        [
            {"gap": g, "who": w, "estimate": e, "lo": e - 0.05, "hi": e + 0.05}
            for w, base in levels
            for g, e in ((0, base), (3, base - 0.1))
        ]
    )
    seen = Interval(0.55, 0.5, 0.6, se=0.025, se_seeds=0.0, se_sample=0.025, df=float("inf"), n_seeds=1, n_queries=10)
    ax = gap_curve_figure(curve, 0.2, "t", seen=seen).axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["seen drawers", "baseline", "control", "chance = category oracle"]
    assert list(ax.get_lines()[1].get_ydata()) == [0.5, 0.4]
    no_seen = gap_curve_figure(curve, 0.2, "t").axes[0]
    assert "seen drawers" not in [line.get_label() for line in no_seen.get_lines()]


def test_flag_floors_says_which_scores_clear_their_trivial_value():
    ch = C.Chapter("04_triplet_baseline", "ci", {})
    ch.add("style_world", "chance", "acc_at_1", 0.10, "", "", "test_seen")
    for method, lo in (("clears", 0.15), ("reaches", 0.08)):
        ch.add("style_world", method, "acc_at_1", 0.30, "val", "", "test_seen")
        ch.add("style_world", method, "acc_at_1_ci95_lo", lo, "val", "", "test_seen")
    ch.add("style_world", "no_interval", "acc_at_1", 0.05, "val", "", "test_seen")
    assert ch.flag_floors() == 1
    flags = {r["method"]: r["value"] for r in ch.rows if r["metric"] == "learnt_acc_at_1"}
    assert flags == {"clears": 1.0, "reaches": 0.0}  # a score without an interval gets no flag


def test_metric_labels_are_what_a_reader_reads():
    from sbir_core.chapter import metric_label

    assert [metric_label(m) for m in ("acc_at_1", "acc_at_10", "map_all", "map_at_200", "precision_at_100")] == [
        "Acc@1",
        "Acc@10",
        "mAP@all",
        "mAP@200",
        "P@100",
    ]
    assert metric_label("map_all_sketch_only_worst_medium") == "mAP@all, sketch only worst medium"
    assert metric_label("mean_rank") == "mean rank"

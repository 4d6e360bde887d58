"""Claims, the papers' effects, and the evidence the chapters record: files that hold together, the
unit of the relative effect, and a claims chapter that agrees with the chapters' own outcomes."""

import math

import numpy as np
import pandas as pd
import pytest

from sbir_core import book
from sbir_core import chapter as C
from sbir_core import claims as CL
from sbir_core.stats import OUTCOME_CODE, Arm


def test_claims_file_names_chapters_of_the_book_and_known_kinds():
    table = CL.load_claims()
    assert set(table["chapter"]) <= set(book.chapters())
    assert set(table["kind"]) <= set(CL.KINDS)
    assert set(table["direction"]) <= {1, -1}


def test_paper_effect_is_the_difference_over_the_reference_arms_margin_over_chance():
    pe = CL.paper_effects()
    shoe = pe[(pe["claim_id"] == "stylemeup_beats_triplet_unseen") & (pe["dataset"] == "shoev2")]
    assert shoe["relative"].item() == pytest.approx((36.47 - 28.71) / (28.71 - 0.5))
    chair = pe[(pe["claim_id"] == "stylemeup_beats_triplet_unseen") & (pe["dataset"] == "chairv2")]
    assert CL.paper_effect("stylemeup_beats_triplet_unseen") == pytest.approx(
        min(shoe["relative"].item(), chair["relative"].item())
    )
    # per setting: k = 5 takes the k = 5 rows only; a claim the paper gives no size has none
    assert CL.paper_effect("c07_beats_anil", "k=5") == pytest.approx((38.3 - 35.7) / (35.7 - 0.5))
    assert math.isnan(CL.paper_effect("stylemeup_gain_grows_with_gap"))
    level = pe[pe["claim_id"] == "with_style_sketch_only_high"]["relative"].item()
    assert level == pytest.approx((81 - 20) / (100 - 20))


def _evidence_rows(tmp_path, monkeypatch):
    """A results folder with two chapters' evidence, built through ``Chapter.claim``; returns the expected counts."""
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path))
    rng = np.random.default_rng(0)
    cl = {"instance": np.arange(200) // 2}

    def pair(pa, pb, seeds=(0, 1)):
        a = Arm((rng.random((len(seeds), 200)) < pa).astype(float), cl, seeds, name="A")
        b = Arm((rng.random((len(seeds), 200)) < pb).astype(float), cl, seeds, name="B")
        for x in (a, b):
            x.floors["chance"] = x.constant(0.02)
        return [(a, 1), (b, -1)], b

    words = []
    ch6 = C.Chapter("06_stylemeup", "ci", {})
    for claim_id, (pa, pb) in {
        "stylemeup_beats_triplet_unseen": (0.6, 0.2),
        "stylemeup_ablation_no_ft": (0.3, 0.3),
        "stylemeup_ablation_no_reg": (0.02, 0.02),
    }.items():
        effect, ref = pair(pa, pb)
        words.append(ch6.claim(claim_id, effect, ref, "style_world", "a - b", "test_unseen").outcome)
    ch6.save()
    ch7 = C.Chapter("07_adaptive", "ci", {})
    for k in (1, 5):
        effect, ref = pair(0.2, 0.5)
        words.append(
            ch7.claim(
                "c07_beats_anil", effect, ref, "style_world", "ours - ANIL", "test_unseen", where=C.setting(k=k)
            ).outcome
        )
    ch7.save()
    return words


def test_evidence_table_reads_back_every_outcome(tmp_path, monkeypatch):
    from sbir_core.results import load_metrics

    words = _evidence_rows(tmp_path, monkeypatch)
    table = CL.evidence_table(load_metrics("ci"))
    assert sorted(table["outcome"]) == sorted(words)
    assert set(words) >= {"reproduced", "contradicted", "not testable"}
    assert set(table.loc[table["claim_id"] == "c07_beats_anil", "setting"]) == {"k=1", "k=5"}
    assert table["p"].notna().sum() >= 4


def test_design_plans_from_the_recorded_error_parts(tmp_path, monkeypatch):
    """Each testable claim row carries its pilot (the error's seed and sample parts, the seeds), and
    ``design`` turns it into the seeds that would detect the paper's effect, or none."""
    from sbir_core.results import load_metrics
    from sbir_core.stats import seeds_needed

    _evidence_rows(tmp_path, monkeypatch)
    table = CL.evidence_table(load_metrics("ci"))
    plan = CL.design(table)
    assert len(plan) == table["rel_effect"].notna().sum() and len(plan) >= 3
    assert ((plan["seed_share"] >= 0) & (plan["seed_share"] <= 1)).all()
    assert (plan["rel_effect_n_seeds"] == 2).all()
    for r in plan.itertuples():
        want = seeds_needed(abs(r.paper_rel_effect), r.mde_rel, r.rel_effect_se_seeds, r.rel_effect_se_sample, 2)
        assert r.seeds_needed == want or (math.isnan(want) and math.isnan(r.seeds_needed))
        assert r.seeds_needed_more_test <= r.seeds_needed or math.isnan(r.seeds_needed)
    assert plan["seeds_needed"].notna().any()  # the claims with a paper size get a plan


def test_evidence_table_when_no_claim_is_testable(tmp_path, monkeypatch):
    """Every arm at its floor (a smoke run, or a set too small to learn from): no relative effect anywhere, and
    the table still has its columns (the pivot drops a metric that is NaN in every row)."""
    from sbir_core.results import load_metrics

    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path))
    cl = {"instance": np.arange(100)}
    a, b = (Arm(np.full((2, 100), 0.02), cl, (0, 1), name=n) for n in "AB")
    for x in (a, b):
        x.floors["chance"] = x.constant(0.02)
    ch6 = C.Chapter("06_stylemeup", "ci", {})
    word = ch6.claim("stylemeup_beats_triplet_unseen", [(a, 1), (b, -1)], b, "style_world", "a - b", "test_unseen")
    ch6.save()
    table = CL.evidence_table(load_metrics("ci"))
    assert word.outcome == "not testable" and list(table["outcome"]) == ["not testable"]
    assert table["rel_effect"].isna().all() and table["p"].isna().all()
    assert CL.design(table).empty and "no design to plan" in CL.design_text(CL.design(table))


def test_claims_chapter_agrees_with_the_chapters_outcomes(tmp_path, monkeypatch):
    """The claims chapter, executed on a results folder of known outcomes, glues exactly their counts."""
    import nbformat

    words = _evidence_rows(tmp_path, monkeypatch)
    out = tmp_path / "10_claims.ipynb"
    book.execute("10_claims", "ci", output=out)
    glued = {}
    for cell in nbformat.read(out, as_version=4).cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glued[name] = o["data"].get("application/papermill.record/text/plain")
    for word in OUTCOME_CODE:
        key = f"c10_world_{word.replace(' ', '_')}"
        assert int(glued[key]) == words.count(word), (key, glued[key], words)
    assert int(glued["c10_n_world"]) == len(words)
    metrics = pd.read_csv(tmp_path / "ci" / "10_claims" / "metrics.csv")
    assert metrics.set_index("metric")["value"]["n_reproduced"] == words.count("reproduced")


def two_arms():
    """Two arms of two seeds on 200 queries (100 objects), A well above B, each with a chance floor."""
    rng = np.random.default_rng(0)
    cl = {"instance": np.arange(200) // 2}
    a = Arm((rng.random((2, 200)) < 0.6).astype(float), cl, (0, 1), name="A")
    b = Arm((rng.random((2, 200)) < 0.2).astype(float), cl, (0, 1), name="B")
    for x in (a, b):
        x.floors["chance"] = x.constant(0.02)
    return a, b


def test_evidence_text_bolds_its_outcome_for_prose_and_not_for_a_tables_cell(tmp_path, monkeypatch):
    """``Evidence.text()`` reads as Markdown in prose; a table's HTML cell would show the asterisks."""
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path))
    a, b = two_arms()
    e = C.Chapter("06_stylemeup", "ci", {}).claim(
        "stylemeup_beats_triplet_unseen", [(a, 1), (b, -1)], b, "style_world", "a - b", "test_unseen"
    )
    assert f": **{e.outcome}**" in e.text()
    plain = e.text(markdown=False)
    assert "*" not in plain and f": {e.outcome}" in plain and plain == e.text().replace("**", "")


def test_a_tables_effect_and_verdict_columns_say_the_outcome_once_and_an_infinite_mde_in_words():
    """A table with an outcome column shows the effect without it (``text(verdict=False)``) and the outcome with its
    reason and fragility (``verdict``); an effect whose reference is too uncertain for any detectable size says so
    instead of leaving "detectable" out."""
    import dataclasses

    a, b = two_arms()
    e = CL.judge([(a, 1), (b, -1)], b)
    effect, verdict = e.text(markdown=False, verdict=False), e.verdict(markdown=False)
    assert e.text(markdown=False) == f"{effect}: {verdict}" and e.outcome not in effect
    assert verdict.startswith(e.outcome) and e.verdict() == f"**{e.outcome}**" + verdict[len(e.outcome) :]
    flip = dataclasses.replace(e, fragile="one seed", reason="why")
    assert flip.verdict(markdown=False) == f"{e.outcome} (why), fragile (one seed would flip it)"
    assert "none detectable" in dataclasses.replace(e, mde_rel=math.inf).text()
    assert f"detectable {e.mde_rel:.2f}" in e.text() and math.isfinite(e.mde_rel)


def test_a_not_testable_reason_names_each_arm_once_when_the_reference_is_rebuilt():
    """A chapter may pass the reference arm as a second object equal to one of the effect's terms: the reason that
    it reaches its floor is said once."""
    rng = np.random.default_rng(1)
    cl = {"instance": np.arange(200) // 2}
    hits = (rng.random((2, 200)) < 0.03).astype(float)

    def arm(name, x):
        a = Arm(x, cl, (0, 1), name=name)
        a.floors["chance"] = a.constant(0.02)
        return a

    a, b = arm("A", (rng.random((2, 200)) < 0.5).astype(float)), arm("B", hits)
    e = CL.judge([(a, 1), (b, -1)], arm("B", hits.copy()))
    assert e.outcome == "not testable"
    assert e.reason.count("B's interval") == 1, e.reason

"""Drawers by region: QuickDraw's country codes grouped into regions, and the matched splits of a style shift.

QuickDraw records the country each drawing was made from (``countrycode``, ISO 3166 alpha-2). A country
is a population of players, not a person, so a region split is a shift between *populations* of drawers:
the real counterpart of the style world's seen and unseen drawers. ``shift_split`` draws, class by class
and from one seed:

* the test region's drawings of the class, halved into a **control** training pool and a **test** pool;
* as many of the **source** regions' drawings of the class as the control pool holds (both cut to the
  smaller), so that a model trained on the source and the control see the same number of drawings of
  every class: the regions' different class mixes cannot make a gap between them;
* the test pool, halved into two folds that take turns as queries and as gallery (``fold_views``), so
  that every test drawing is asked once and no drawing is ranked against itself.

Category-level sketch-to-sketch retrieval: a query's relevant items are the gallery drawings of its
class. Methods made for sketch-photo pairs train on ``hub_view``: within a class, every few drawings
one is a *hub* (the "photo"), and each other drawing's true match is one of its class's hubs. The
hub's ``drawer`` is the country, StyleMeUp's style for its episodes (a population, not a person).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

from sbir_core.data.base import DataError
from sbir_core.data.views import CategoryView, RetrievalView, sketch_tensor

ANYWHERE = "*"  # a region of every country no other region names
MIN_TEST = 2  # test drawings a class needs (one per fold, so each query has a relevant gallery item)
MIN_TRAIN = 2  # training drawings a class needs in each arm (a hub and a query)


def region_of(codes, regions: dict) -> np.ndarray:
    """The region name of each country code: ``regions`` maps a name to a list of codes, or to ``"*"``
    (every code no other region lists; at most one such region). A code in no region gets ""."""
    codes = pd.Series(codes, dtype=str).str.upper().to_numpy()
    rest = [name for name, members in regions.items() if members == ANYWHERE]
    if len(rest) > 1:
        raise DataError(f"regions: only one region may be {ANYWHERE!r} (every other country), got {rest}")
    listed: dict[str, str] = {}
    for name, members in regions.items():
        if members == ANYWHERE:
            continue
        if isinstance(members, str) or not all(isinstance(c, str) and len(c) == 2 for c in members):
            raise DataError(f"region {name!r}: a list of two-letter country codes or {ANYWHERE!r}, got {members!r}")
        for code in members:
            if code.upper() in listed:
                raise DataError(f"country {code} is in regions {listed[code.upper()]!r} and {name!r}")
            listed[code.upper()] = name
    fallback = rest[0] if rest else ""
    return np.array([listed.get(c, fallback if c.strip() else "") for c in codes], dtype=object)


def _order(keys, seed: int, salt: str) -> np.ndarray:
    """A seeded shuffle of ``keys`` (drawing ids) that does not depend on their order in the table."""
    digest = [hashlib.sha256(f"{seed}/{salt}/{k}".encode()).hexdigest() for k in keys]
    return np.argsort(digest, kind="stable")


def shift_split(table: pd.DataFrame, regions: dict, test_region: str, seed: int = 0) -> dict:
    """Row positions of ``table`` (a sketch table with ``category``, ``countrycode`` and ``sketch_id``) for a
    region shift onto ``test_region``: ``source`` and ``control`` (training pools, equal counts per class),
    ``test_a`` and ``test_b`` (the two test folds), and ``classes`` kept, ``dropped`` (class -> why)."""
    if test_region not in regions:
        raise DataError(f"test region {test_region!r} is not one of the regions {sorted(regions)}")
    if "countrycode" not in table or (table["countrycode"].astype(str).str.strip() == "").all():
        raise DataError("the drawings carry no country code (sketch-rnn .npz files drop it; use the ndjson files)")
    region = region_of(table["countrycode"], regions)
    out = {k: [] for k in ("source", "control", "test_a", "test_b")}
    classes, dropped = [], {}
    for cls, rows in table.groupby("category", sort=True).indices.items():
        here, away = rows[region[rows] == test_region], rows[(region[rows] != test_region) & (region[rows] != "")]
        here = here[_order(table["sketch_id"].to_numpy()[here], seed, f"{cls}/here")]
        away = away[_order(table["sketch_id"].to_numpy()[away], seed, f"{cls}/away")]
        n_test = len(here) - len(here) // 2
        n_train = min(len(here) // 2, len(away))
        if n_test < MIN_TEST or n_train < MIN_TRAIN:
            dropped[str(cls)] = (
                f"{len(here)} drawing(s) from {test_region} and {len(away)} from elsewhere: needs "
                f"{MIN_TEST + MIN_TRAIN} from {test_region} and {MIN_TRAIN} from elsewhere"
            )
            continue
        classes.append(str(cls))
        test, control = here[:n_test], here[n_test : n_test + n_train]
        out["control"].append(control)
        out["source"].append(away[:n_train])
        out["test_a"].append(test[: (len(test) + 1) // 2])
        out["test_b"].append(test[(len(test) + 1) // 2 :])
    if len(classes) < 2:
        raise DataError(
            f"a region shift onto {test_region!r} needs 2 or more classes with enough drawings from both sides; "
            f"{len(classes)} qualify. Dropped: {dict(list(dropped.items())[:5])}"
        )
    return {k: np.concatenate(v) for k, v in out.items()} | {"classes": classes, "dropped": dropped}


def hub_view(
    data, rows: np.ndarray, images: torch.Tensor, every: int = 6, seed: int = 0, name: str = ""
) -> RetrievalView:
    """A training view of the drawings ``rows`` of ``data`` (``images``: all its sketches as a tensor): in each
    class, one drawing in ``every`` (at least one) is a hub, the gallery; every other drawing is a query whose
    true match is one of its class's hubs, in turn. The queries' ``drawer`` is their country code."""
    if every < 2:
        raise DataError(f"hub_view: every must be 2 or more (a hub and a query), got {every}")
    table = data.sketches
    hubs, queries, target = [], [], []
    for _cls, pos in table.iloc[rows].groupby("category", sort=True).indices.items():
        members = rows[pos]
        members = members[_order(table["sketch_id"].to_numpy()[members], seed, "hubs")]
        n_hubs = max(1, len(members) // every)
        if len(members) - n_hubs < 1:
            continue
        first = len(hubs)
        hubs.extend(members[:n_hubs])
        for i, r in enumerate(members[n_hubs:]):
            queries.append(r)
            target.append(first + i % n_hubs)
    if not queries or len(hubs) < 2:
        raise DataError(f"hub_view {name!r}: {len(queries)} queries and {len(hubs)} hubs; needs 2+ classes")
    q, g = np.asarray(queries), np.asarray(hubs)
    q_table = table.iloc[q].copy()
    q_table["drawer"] = q_table["countrycode"].astype(str)
    return RetrievalView(
        name or f"{data.name}/hubs",
        images[torch.as_tensor(q)],
        images[torch.as_tensor(g)],
        torch.as_tensor(target, dtype=torch.long),
        q_table,
        table.iloc[g].copy(),
        None,
    )


def fold_views(data, split: dict, images: torch.Tensor, name: str = "") -> list[CategoryView]:
    """The two test views of ``shift_split``'s folds: fold a's drawings asked against fold b's, then b's
    against a's (relevant: same class)."""
    a, b = split["test_a"], split["test_b"]
    table = data.sketches
    return [
        CategoryView(
            f"{name or data.name}/{q_name}->{g_name}",
            images[torch.as_tensor(q)],
            images[torch.as_tensor(g)],
            table.iloc[q].copy(),
            table.iloc[g].copy(),
        )
        for q, g, q_name, g_name in ((a, b, "a", "b"), (b, a, "b", "a"))
    ]


def images_of(data, size: int, line_width: float) -> torch.Tensor:
    """Every sketch of ``data`` as the (N, 1, S, S) tensor the views index."""
    return sketch_tensor(data.sketch_images(size, line_width))

"""Batch samplers the trainer draws with, by the name a method gives (``Method.sampler``).

Each sampler is ``f(view, batch_size, generator, **options) -> dict`` over a ``RetrievalView``,
and draws everything random from ``generator`` (so a run is a function of its seed).

* "triplets": ``batch_size`` anchors, each with its true photo and the photo of a random other
  query of its category (``RetrievalView.triplets``), plus ``flip`` (B,) bool for the shared
  horizontal flip and, when the view has them, the anchors' ``strokes``.
* "drawer_episodes": ``batch_size`` tasks, each a *support* and a *query* triplet batch of
  ``k_support`` and ``k_query`` sketches. With ``held_out=False`` both come from one drawer (adapt to
  this person, then be judged on more of their sketches: Adaptive FG-SBIR's user level); with
  ``held_out=True`` the query comes from another drawer than the support's (generalise to a person
  not adapted to: StyleMeUp's pseudo-unseen style).
* "category_episodes": the same with the category as the group (Adaptive FG-SBIR's category level).

A method that needs another kind of batch registers its sampler with ``register_sampler``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sbir_core.data.base import DataError
from sbir_core.data.views import RetrievalView

SAMPLERS: dict[str, Callable] = {}


def register_sampler(name: str):
    """Decorator: make ``f(view, batch_size, generator, **options)`` available as ``Method.sampler = name``."""

    def deco(fn):
        SAMPLERS[name] = fn
        return fn

    return deco


def get_sampler(name: str) -> Callable:
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; known: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name]


def _with_extras(view: RetrievalView, batch: dict, generator: torch.Generator) -> dict:
    batch["flip"] = torch.rand(len(batch["idx"]), generator=generator) < 0.5
    if view.strokes is not None:
        batch["strokes"] = [view.strokes[int(i)] for i in batch["idx"]]
    return batch


@register_sampler("triplets")
def triplets(view: RetrievalView, batch_size: int, generator: torch.Generator) -> dict:
    """A batch of random anchors (distinct within the batch) as triplets, with a flip draw."""
    return _with_extras(view, view.sample_triplets(batch_size, generator), generator)


def _episodes(
    view: RetrievalView,
    column: str,
    tasks: int,
    generator: torch.Generator,
    k_support: int,
    k_query: int,
    held_out: bool,
) -> dict:
    if column not in view.table or (view.table[column] == "").all():
        raise DataError(f"{view.name}: no {column} ids, so no {column} episodes")
    groups = view.table.groupby(column, sort=True).indices
    names = sorted(groups)
    need = k_support if held_out else k_support + k_query
    able = [g for g in names if len(groups[g]) >= need]
    if not able or (held_out and len(names) < 2):
        sizes = {g: len(groups[g]) for g in names}
        raise DataError(
            f"{view.name}: an episode needs a {column} with at least {need} sketches"
            f"{' and another ' + column + ' for the held-out query' if held_out else ''}; "
            f"{column} sizes: {dict(list(sizes.items())[:8])}"
        )
    out = []
    for _ in range(tasks):
        g = able[int(torch.randint(len(able), (1,), generator=generator))]
        rows = torch.as_tensor(groups[g], dtype=torch.long)
        rows = rows[torch.randperm(len(rows), generator=generator)]
        support = rows[:k_support]
        if held_out:
            others = [h for h in names if h != g]
            h = others[int(torch.randint(len(others), (1,), generator=generator))]
            q_rows = torch.as_tensor(groups[h], dtype=torch.long)
            query = q_rows[torch.randperm(len(q_rows), generator=generator)[:k_query]]
        else:
            h = g
            query = rows[k_support : k_support + k_query]
        out.append(
            {
                "group": g,
                "query_group": h,
                "support": _with_extras(view, view.triplets(support, generator), generator),
                "query": _with_extras(view, view.triplets(query, generator), generator),
            }
        )
    return {"tasks": out}


@register_sampler("drawer_episodes")
def drawer_episodes(
    view: RetrievalView,
    batch_size: int,
    generator: torch.Generator,
    k_support: int = 5,
    k_query: int = 5,
    held_out: bool = False,
) -> dict:
    """``batch_size`` tasks of one drawer's support sketches and query sketches (see the module docstring)."""
    return _episodes(view, "drawer", batch_size, generator, k_support, k_query, held_out)


@register_sampler("category_episodes")
def category_episodes(
    view: RetrievalView,
    batch_size: int,
    generator: torch.Generator,
    k_support: int = 5,
    k_query: int = 5,
    held_out: bool = False,
) -> dict:
    """``batch_size`` tasks of one category's support and query sketches."""
    return _episodes(view, "category", batch_size, generator, k_support, k_query, held_out)

"""What identifies a training run and what it leaves: the layer below both ``train`` and ``store``.

``run_identity`` gathers everything that determines a run (the method and its options, digests of
its views' tensors, the training config with the seed, and the source of the code it depends on);
``fingerprint`` names it, for checkpoints and for the store of trained states. ``RunResult`` is one
seed's history, its two model-selection protocols and its selected state; ``MultiSeedResult`` holds
one setting's seeds.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

PROTOCOL_VAL = "val_selected"


# ---------------------------------------------------------------------- identity of a run


def view_digest(view) -> str | None:
    """A hash of what a view feeds a method: its tensors, targets, grouping and query table ids."""
    if view is None:
        return None
    h = hashlib.sha1()
    for t in (view.queries, view.gallery, view.target):
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(f"group={view.group}".encode())
    for col in ("drawer", "category", "instance"):
        if col in view.table:
            h.update("\0".join(map(str, view.table[col])).encode())
    if view.strokes is not None:
        for s in view.strokes:
            h.update(np.ascontiguousarray(s).tobytes())
    return h.hexdigest()[:16]


def _module_file(name: str) -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _package_imports(name: str, path: Path) -> set[str]:
    """The ``sbir_core`` modules that module ``name`` imports anywhere in its source (a function's lazy
    import too: ``train`` reads ``evaluation`` and ``store`` that way)."""
    import ast

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # ``from pkg import module``
    return {m for m in found if m.split(".")[0] == "sbir_core" and _module_file(m) is not None}


def code_closure(modules: Iterable[str]) -> list[str]:
    """``modules`` and every package module they import, directly or through another: all the code a
    run executes (the evaluation and metric code that computes its numbers, the seeding, the sibling
    models a method builds on), so changing any of it makes a new run."""
    return list(_closure(tuple(sorted(set(modules)))))


@functools.lru_cache(maxsize=64)
def _closure(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Parsing the imports takes ~70 ms and a chapter asks for hundreds of run keys: the module names are
    found once per process (the digest still reads every file's current bytes each time)."""
    todo, seen = list(modules), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            raise ValueError(f"no source for module {name}")
        todo += sorted(_package_imports(name, path) - seen)
    return tuple(sorted(seen))


def source_digest(modules: Iterable[str]) -> str:
    """A hash of the source files of the given modules and of every package module they import (a code
    change makes a new run)."""
    h = hashlib.sha1()
    for name in code_closure(modules):
        h.update(name.encode())
        h.update(_module_file(name).read_bytes())
    return h.hexdigest()[:16]


def run_identity(spec, train, val, tests: dict | None, config, init: str | None = None, val_adapt=None) -> dict:
    """Everything that determines a run: method spec, data digests, training config, seed, code, and how many
    data-parallel processes train it (the sums of their shards' gradients round differently: a 2-process run's
    weights differ from a 1-process run's by ~1e-3 after 60 steps), and on how many CPU threads (one and two
    round differently too: ``repro.DEFAULT_THREADS``); init: the name of the state it starts from; val_adapt:
    (column, support_for, rule) when validation adapts first (the rule names it)."""
    import torch

    from sbir_core.distributed import context

    identity = {
        "method": spec.as_dict(),
        "train": view_digest(train),
        "val": view_digest(val),
        "tests": {k: view_digest(v) for k, v in sorted((tests or {}).items())},
        "config": config.identity(),
        "code": source_digest(spec.sources()),
        "processes": context().world,
        "threads": torch.get_num_threads(),
    }
    if init is not None:
        identity["init"] = init
    if val_adapt:
        identity["val_adapt"] = val_adapt[2]
    return identity


def fingerprint(identity: dict) -> str:
    """The one fingerprint of a run, for checkpoints and for the store of trained states."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]


def differing_fields(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two identities differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differing_fields(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k} ({va!r} != {vb!r})")
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- results


@dataclass
class RunResult:
    """One seed's run: the evaluation history and both model-selection protocols.

    history: one row per evaluation: step, loss (mean since the last evaluation), and columns
        "<view>/acc_at_K" for "val" and each test view.
    val_selected: {"step": int, "<view>": {"acc_at_K": float}} (empty without a validation view).
    best_on_test: {"<test view>": {"step": int, "acc_at_K": float}}.
    best_state: the model's state dict at the val-selected step (the last step without validation).
    fingerprint: the run's fingerprint (``run_identity``), "" when trained without one.
    """

    seed: int
    history: pd.DataFrame
    val_selected: dict
    best_on_test: dict
    best_state: dict = field(repr=False, default_factory=dict)
    fingerprint: str = ""

    @property
    def protocol(self) -> str:
        """How ``best_state`` was chosen: "val_selected", or "last_step" for a run without validation."""
        return PROTOCOL_VAL if self.val_selected else "last_step"

    def to_plain(self) -> dict:
        """Plain containers for ``torch.save`` (loadable with ``weights_only=True``)."""
        return {
            "seed": self.seed,
            "history": self.history.to_dict("list"),
            "history_columns": list(self.history),
            "val_selected": self.val_selected,
            "best_on_test": self.best_on_test,
            "best_state": self.best_state,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_plain(cls, d: dict) -> RunResult:
        hist = pd.DataFrame(d["history"], columns=d["history_columns"])
        return cls(int(d["seed"]), hist, d["val_selected"], d["best_on_test"], d["best_state"], d["fingerprint"])


@dataclass
class MultiSeedResult:
    """Runs of one setting over several seeds."""

    runs: list[RunResult]

    def histories(self) -> pd.DataFrame:
        """All seeds' histories stacked, with a ``seed`` column (for curves with seed bands)."""
        return pd.concat([r.history.assign(seed=r.seed) for r in self.runs], ignore_index=True)

    def methods(self, spec) -> list:
        """Each seed's selected model, rebuilt from ``spec`` with its ``best_state`` (in eval mode)."""
        out = []
        for run in self.runs:
            m = spec.build()
            m.load_state_dict(run.best_state)
            out.append(m.eval())
        return out

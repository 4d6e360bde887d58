"""The training engine: one loop for every method, seeded, checkpointed, honest about model selection.

``Trainer(model, train, val, tests, config).fit()`` runs ``config.steps`` optimiser steps. The model
supplies ``batch_loss(view, batch_size, generator)`` (it draws its own batch from the training view
with the trainer's generator), ``embed_query`` and ``embed_gallery``. Every ``eval_every`` steps the
model is evaluated (Acc@K through ``sbir_core.metrics``) on the validation view and on each test view.

Model selection, two protocols, both recorded and labelled:
* ``"val_selected"``: the test figures at the evaluation step with the best validation Acc@1
  (ties: best validation Acc@K at the next K, then the earliest step). The honest number.
* ``"best_on_test (paper protocol)"``: the best test Acc@1 over all evaluation steps (with the
  other Acc@K at that step), as every QMUL code base does (METHODS.md §0.4). Optimistic.

Checkpoints are ``torch.save`` of plain containers (state dicts, tensors, numbers, strings) and are
read with ``torch.load(weights_only=True)``, which cannot run code. They hold the model, the
optimiser, the step, the sampling generator and the global RNG, the history and the best state, so a
run resumed from one ends exactly as an uninterrupted run would (``tests/test_train.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from sbir_core.data.views import RetrievalView
from sbir_core.metrics import acc_at_k, pairwise_distances, true_match_rank
from sbir_core.repro import seed_everything

PROTOCOL_VAL = "val_selected"
PROTOCOL_TEST = "best_on_test (paper protocol)"
OPTIMIZERS = ("adam", "adamw")


class TrainError(RuntimeError):
    """A bad training configuration or a checkpoint that does not fit the run."""


@dataclass
class TrainConfig:
    """What the trainer does; loadable from YAML (``from_yaml``) or a dict (``from_dict``).

    steps: optimiser steps. batch_size: anchors per step. lr, weight_decay: of the optimiser.
    optimizer: "adam" | "adamw". eval_every: evaluate every N steps (and at the last step).
    ks: the K of Acc@K; the first is the selection metric. seed: seeds the model's initialisation
    and the batch generator. checkpoint_dir: where ``last.pt`` goes ("" / None: no checkpoints).
    checkpoint_every: save every N steps (0: at every evaluation). progress: tqdm bar.
    eval_batch: images per forward pass during evaluation. device: "cpu" (the ci scale) or e.g. "cuda".
    """

    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    eval_every: int = 100
    ks: tuple[int, ...] = (1, 10)
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    progress: bool = True
    eval_batch: int = 512
    device: str = "cpu"

    def __post_init__(self):
        self.ks = tuple(int(k) for k in self.ks)
        if self.optimizer not in OPTIMIZERS:
            raise TrainError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("steps", "batch_size", "eval_every", "eval_batch"):
            if int(getattr(self, name)) < 1:
                raise TrainError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every < 0 or self.lr <= 0 or not self.ks or min(self.ks) < 1:
            raise TrainError(f"bad TrainConfig: checkpoint_every={self.checkpoint_every}, lr={self.lr}, ks={self.ks}")
        if self.checkpoint_dir == "":
            self.checkpoint_dir = None

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict; keys may be lower or UPPER case; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {str(k).lower(): v for k, v in (values or {}).items()}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TrainError(f"unknown TrainConfig keys {unknown}; known: {sorted(names)}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Build from a YAML file holding a mapping of ``TrainConfig`` fields."""
        with open(path) as f:
            return cls.from_dict(yaml.safe_load(f) or {})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ks"] = list(self.ks)
        return d

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------- evaluation

@torch.no_grad()
def embed(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Embed (N, C, S, S) images in chunks: (N, D) float32."""
    return torch.cat([fn(images[i:i + batch]) for i in range(0, len(images), batch)])


def evaluate(model: nn.Module, view: RetrievalView, ks: Iterable[int] = (1, 10), batch: int = 512) -> dict:
    """Acc@K of ``model`` on ``view``: {"acc_at_K": float, ..., "ranks": (N,) int64}; model left in its mode."""
    was_training = model.training
    model.eval()
    try:
        q = embed(model.embed_query, view.queries, batch)
        g = embed(model.embed_gallery, view.gallery, batch)
    finally:
        model.train(was_training)
    ranks = true_match_rank(pairwise_distances(q.cpu(), g.cpu()), view.target.cpu().numpy())
    out = {f"acc_at_{k}": acc_at_k(ranks, k) for k in ks}
    out["ranks"] = ranks
    return out


def to_device(view: RetrievalView | None, device: torch.device) -> RetrievalView | None:
    """The view with its tensors on ``device`` (the same object when they already are)."""
    if view is None or view.queries.device == device:
        return view
    return dataclasses.replace(view, queries=view.queries.to(device), gallery=view.gallery.to(device),
                               target=view.target.to(device))


# ---------------------------------------------------------------------- results

@dataclass
class RunResult:
    """One seed's run: the evaluation history and both model-selection protocols.

    history: one row per evaluation: step, loss (mean since the last evaluation), and columns
        "<view>/acc_at_K" for "val" and each test view.
    val_selected: {"step": int, "<test view>": {"acc_at_K": float}} (empty without a validation view).
    best_on_test: {"<test view>": {"step": int, "acc_at_K": float}}.
    best_state: the model's state dict at the val-selected step (the last step without validation).
    """

    seed: int
    history: pd.DataFrame
    val_selected: dict
    best_on_test: dict
    best_state: dict = field(repr=False, default_factory=dict)

    def rows(self, dataset: str, method: str) -> list[dict]:
        """Tidy rows (keys of ``results.metric_rows``) of this seed, both protocols."""
        out = []
        for split, metrics in self.best_on_test.items():
            for metric, value in metrics.items():
                if metric != "step":
                    out.append(dict(dataset=dataset, method=method, protocol=PROTOCOL_TEST, split=split,
                                    metric=metric, value=value, seed=self.seed))
        for split, metrics in self.val_selected.items():
            if split == "step":
                continue
            for metric, value in metrics.items():
                out.append(dict(dataset=dataset, method=method, protocol=PROTOCOL_VAL, split=split,
                                metric=metric, value=value, seed=self.seed))
        return out


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the mean: (mean, low, high); NaN bounds for n < 2."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def with_seed_summary(rows: list[dict]) -> list[dict]:
    """Per-seed tidy rows followed by, at seed -1, each figure's mean over seeds ("acc_at_1") and its
    95% t-interval ("acc_at_1_ci95_lo", "acc_at_1_ci95_hi"; left out for a single seed)."""
    df = pd.DataFrame(rows)
    out = list(rows)
    for key, g in df.groupby(["dataset", "method", "protocol", "split", "metric"], sort=True):
        m, lo, hi = mean_ci(g["value"])
        for suffix, value in (("", m), ("_ci95_lo", lo), ("_ci95_hi", hi)):
            if not (suffix and math.isnan(value)):
                out.append(dict(zip(["dataset", "method", "protocol", "split"], key), metric=key[-1] + suffix,
                                value=value, seed=-1))
    return out


@dataclass
class MultiSeedResult:
    """Runs of one setting over several seeds, with mean and 95% t-interval."""

    runs: list[RunResult]

    def summary(self) -> pd.DataFrame:
        """protocol, split, metric, n, mean, ci95_lo, ci95_hi, one row per figure."""
        df = pd.DataFrame([r for run in self.runs for r in run.rows("", "")])
        out = []
        for (protocol, split, metric), g in df.groupby(["protocol", "split", "metric"], sort=True):
            m, lo, hi = mean_ci(g["value"])
            out.append(dict(protocol=protocol, split=split, metric=metric, n=len(g), mean=m, ci95_lo=lo, ci95_hi=hi))
        return pd.DataFrame(out)

    def rows(self, dataset: str, method: str) -> list[dict]:
        """Per-seed rows plus, at seed -1, the mean ("acc_at_1") and its interval ("acc_at_1_ci95_lo/hi")."""
        return with_seed_summary([r for run in self.runs for r in run.rows(dataset, method)])

    def histories(self) -> pd.DataFrame:
        """All seeds' histories stacked, with a ``seed`` column (for curves with seed bands)."""
        return pd.concat([r.history.assign(seed=r.seed) for r in self.runs], ignore_index=True)


# ---------------------------------------------------------------------- the trainer

class Trainer:
    """Trains ``model`` on ``train`` with ``config``; evaluates on ``val`` and ``tests`` (name -> view).

    callbacks: called as ``cb(trainer, step, loss)`` after every optimiser step (``step`` counts
    from 1); an exception raised there interrupts the run like a crash would.
    """

    def __init__(self, model: nn.Module, train: RetrievalView, val: RetrievalView | None,
                 tests: dict[str, RetrievalView] | None, config: TrainConfig,
                 callbacks: Iterable[Callable] = ()):
        self.config = config
        self.device = torch.device(config.device)
        self.model = model.to(self.device)
        self.train_view = to_device(train, self.device)
        self.val = to_device(val, self.device)
        self.tests = {k: to_device(v, self.device) for k, v in (tests or {}).items()}
        self.callbacks = list(callbacks)
        opt = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        self.optimizer = opt(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.history: list[dict] = []
        self.losses: list[float] = []
        self.best_state: dict = {}
        self.best_key: tuple = ()

    # -- checkpoints

    @property
    def checkpoint_path(self) -> Path | None:
        d = self.config.checkpoint_dir
        return None if d is None else Path(d) / "last.pt"

    def _identity(self) -> dict:
        keep = ("steps", "batch_size", "lr", "optimizer", "weight_decay", "eval_every", "ks", "seed")
        return {k: v for k, v in self.config.to_dict().items() if k in keep}

    def save_checkpoint(self) -> Path:
        """Write ``last.pt`` atomically (plain containers only, loadable with ``weights_only=True``)."""
        path = self.checkpoint_path
        if path is None:
            raise TrainError("no checkpoint_dir in the TrainConfig")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": "sbir_core.train/1",
            "config": self._identity(),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "losses": self.losses,
            "best_state": self.best_state,
            "best_key": list(self.best_key),
        }
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> bool:
        """Restore everything from a checkpoint; False when there is none. Never runs code from the file."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("format") != "sbir_core.train/1":
            raise TrainError(f"{path}: not a sbir_core.train checkpoint")
        if state["config"] != self._identity():
            raise TrainError(f"{path}: checkpoint of another configuration {state['config']}, "
                             f"this run is {self._identity()}; remove it or use another checkpoint_dir")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.generator.set_state(state["generator"].cpu())
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.losses = list(state["losses"])
        self.best_state = state["best_state"]
        self.best_key = tuple(state["best_key"])
        return True

    # -- loop

    def evaluate_now(self) -> dict:
        """Evaluate on val and tests; append to the history; update the val-selected state."""
        c = self.config
        rec = {"step": self.step, "loss": float(np.mean(self.losses)) if self.losses else math.nan}
        self.losses = []
        views = ([("val", self.val)] if self.val is not None else []) + list(self.tests.items())
        for name, view in views:
            res = evaluate(self.model, view, c.ks, c.eval_batch)
            rec.update({f"{name}/acc_at_{k}": res[f"acc_at_{k}"] for k in c.ks})
        self.history.append(rec)
        if self.val is not None:
            # larger is better on every key; the negative step prefers the earliest of ties
            key = tuple(rec[f"val/acc_at_{k}"] for k in c.ks) + (-self.step,)
            if not self.best_key or key > self.best_key:
                self.best_key = key
                self.best_state = copy.deepcopy(self.model.state_dict())
        return rec

    def fit(self, resume: bool = True) -> RunResult:
        """Train to ``config.steps`` (continuing from ``last.pt`` when ``resume`` and it exists)."""
        from tqdm.auto import tqdm

        c = self.config
        if resume:
            self.load_checkpoint()
        self.model.train()
        every_ckpt = c.checkpoint_every or c.eval_every
        bar = tqdm(total=c.steps, initial=self.step, disable=not c.progress, desc=f"seed {c.seed}",
                   leave=False)
        try:
            while self.step < c.steps:
                loss = self.model.batch_loss(self.train_view, c.batch_size, self.generator)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.step += 1
                value = float(loss.detach())
                self.losses.append(value)
                bar.update(1)
                if self.step % c.eval_every == 0 or self.step == c.steps:
                    rec = self.evaluate_now()
                    bar.set_postfix({k: round(v, 3) for k, v in rec.items() if k != "step"})
                if self.checkpoint_path is not None and (self.step % every_ckpt == 0 or self.step == c.steps):
                    self.save_checkpoint()
                for cb in self.callbacks:
                    cb(self, self.step, value)
        finally:
            bar.close()
        return self.result()

    def result(self) -> RunResult:
        """Both model-selection protocols from the history so far."""
        hist = pd.DataFrame(self.history)
        ks = self.config.ks
        best_on_test, val_selected = {}, {}
        for name in self.tests:
            col = f"{name}/acc_at_{ks[0]}"
            # idxmax returns the first maximum: the earliest step among ties
            row = hist.loc[hist[col].idxmax()]
            best_on_test[name] = {"step": int(row["step"]), **{f"acc_at_{k}": float(row[f"{name}/acc_at_{k}"]) for k in ks}}
        if self.val is not None and len(hist):
            step = -self.best_key[-1]
            row = hist.loc[hist["step"] == step].iloc[0]
            val_selected = {"step": int(step), **{name: {f"acc_at_{k}": float(row[f"{name}/acc_at_{k}"]) for k in ks}
                                                  for name in ["val", *self.tests]}}
        best = self.best_state or copy.deepcopy(self.model.state_dict())
        return RunResult(self.config.seed, hist, val_selected, best_on_test, best)


def run_seeds(build_model: Callable[[], nn.Module], train: RetrievalView, val: RetrievalView | None,
              tests: dict[str, RetrievalView], config: TrainConfig, seeds: Iterable[int],
              models: list | None = None) -> MultiSeedResult:
    """Train one fresh model per seed (initialised after ``seed_everything(seed)``) and collect the results.

    Checkpoints of seed s go to ``<checkpoint_dir>/seed_<s>``. ``models``, when given a list,
    receives each trained model (at its last step).
    """
    runs = []
    for seed in seeds:
        seed_everything(seed)
        model = build_model()
        ckpt = None if config.checkpoint_dir is None else str(Path(config.checkpoint_dir) / f"seed_{seed}")
        trainer = Trainer(model, train, val, tests, config.replace(seed=seed, checkpoint_dir=ckpt))
        runs.append(trainer.fit())
        if models is not None:
            models.append(model)
    return MultiSeedResult(runs)


def evaluate_states(build_model: Callable[[], nn.Module], result: MultiSeedResult, views: dict[str, RetrievalView],
                    ks: Iterable[int] = (1, 10), dataset: str = "", method: str = "",
                    protocol: str = PROTOCOL_VAL) -> list[dict]:
    """Evaluate each seed's val-selected weights (``RunResult.best_state``) on more views, without training.

    Returns tidy rows (split = the view's key in ``views``), one per seed, view and Acc@K. A run
    trained without a validation view kept its last step; its rows say so (protocol "last_step").
    """
    rows = []
    for run in result.runs:
        model = build_model()
        model.load_state_dict(run.best_state)
        label = protocol if run.val_selected else "last_step"
        for name, view in views.items():  # on the CPU: evaluation only
            res = evaluate(model, view, ks)
            rows += [dict(dataset=dataset, method=method, protocol=label, split=name, metric=f"acc_at_{k}",
                          value=res[f"acc_at_{k}"], seed=run.seed) for k in ks]
    return rows


@torch.no_grad()
def top_k(model: nn.Module, view: RetrievalView, k: int = 5, queries=None) -> np.ndarray:
    """Gallery rows of the ``k`` nearest items for each query (or the rows ``queries``): (Q, k) int64, nearest first."""
    was_training = model.training
    model.eval()
    q = view.queries if queries is None else view.queries[torch.as_tensor(queries)]
    dist = pairwise_distances(embed(model.embed_query, q).cpu(), embed(model.embed_gallery, view.gallery).cpu())
    model.train(was_training)
    # stable sort: among equal distances the lower gallery row comes first
    return np.argsort(dist, axis=1, kind="stable")[:, :k]

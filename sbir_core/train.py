"""The training engine: one loop for every method, seeded, checkpointed, honest about model selection.

``Trainer(method, train, val, tests, config).fit()`` runs ``config.steps`` steps. The trainer knows
nothing of a method's internals (``sbir_core.models.base``): it draws each batch with the sampler the
method names (``sbir_core.samplers``), lets the method take its step with the optimisers it
configures, and every ``eval_every`` steps evaluates it (``sbir_core.evaluation``) on the validation
view and on each test view.

Model selection, two protocols, both recorded and labelled:
* ``"val_selected"``: the test figures at the evaluation step with the best validation Acc@1
  (ties: best validation Acc@K at the next K, then the earliest step). The honest number.
* ``"best_on_test (paper protocol)"``: the best test Acc@1 over all evaluation steps (with the
  other Acc@K at that step), as every QMUL code base does (METHODS.md §0.4). Optimistic.

Checkpoints know their experiment: each carries the run's identity (method, data digest, training
config, seed, code; a trainer given no identity derives one, ``own_identity``) and its fingerprint, and
a SHA-256 of its bytes in a JSON beside it. A run's checkpoints live in
``<checkpoint_dir>/<fingerprint>/`` (so a changed parameter starts a fresh run in its own folder, never
resumes another's), the last two are kept, and resuming picks the newest one whose checksum and
fingerprint hold: a damaged file is reported with its path and set aside (renamed ``*.corrupt``), and a
checkpoint of another run is refused naming the fields that differ. Files are ``torch.save`` of plain
containers read with ``weights_only=True``, which cannot run code; resuming gives exactly the
uninterrupted run (``tests/test_train.py``).

Data-parallel (``torchrun``, ``sbir_core.distributed``): every process draws the same global batch and
trains on its shard, gradients averaged; rank 0 evaluates, checkpoints and stores. A checkpoint holds
the global state, so a run resumes with any number of processes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sbir_core import distributed as D
from sbir_core.data.views import RetrievalView
from sbir_core.errors import SBIRError
from sbir_core.evaluation import evaluate
from sbir_core.models.base import Method, NonFiniteLoss
from sbir_core.repro import preserved_rng, seed_everything
from sbir_core.runs import (
    PROTOCOL_VAL,
    MultiSeedResult,
    RunResult,
    differing_fields,
    file_sha256,
    fingerprint,
    run_identity,
    source_digest,
    view_digest,
)
from sbir_core.samplers import get_sampler

PROTOCOL_TEST = "best_on_test (paper protocol)"
# the trainer's face: what it defines, and the run records it returns (defined in ``sbir_core.runs``)
__all__ = [
    "PROTOCOL_TEST",
    "PROTOCOL_VAL",
    "MultiSeedResult",
    "RunResult",
    "TrainConfig",
    "TrainError",
    "Trainer",
    "fingerprint",
    "run_identity",
    "step_cost",
    "train_run",
    "train_seeds",
]
OPTIMIZERS = ("adam", "adamw")
CHECKPOINT_FORMAT = "sbir_core.train/2"
KEEP_CHECKPOINTS = 2


class TrainError(SBIRError, RuntimeError):
    """A bad training configuration, a checkpoint that does not fit the run, or a diverged run."""


@dataclass
class TrainConfig:
    """What the trainer does; loadable from a dict (``from_dict``).

    steps: training steps. batch_size: the sampler's batch (anchors, or tasks for episode samplers).
    lr, weight_decay: of the default optimiser. optimizer: "adam" | "adamw". eval_every: evaluate
    every N steps (and at the last step). ks: the K of Acc@K; the first is the selection metric.
    seed: seeds the method's initialisation and the batch generator. checkpoint_dir: where run
    folders go ("" / None: no checkpoints). checkpoint_every: save every N steps (0: at every
    evaluation). progress: tqdm bar. eval_batch: images per forward pass during evaluation.
    device: "cpu" (the ci scale) or e.g. "cuda".
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
        if (
            self.checkpoint_every < 0
            or not self.lr > 0
            or not math.isfinite(self.lr)
            or not self.ks
            or min(self.ks) < 1
        ):
            raise TrainError(f"bad TrainConfig: checkpoint_every={self.checkpoint_every}, lr={self.lr}, ks={self.ks}")
        if self.checkpoint_dir == "":
            self.checkpoint_dir = None

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict; keys may be lower or UPPER case; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {str(k).lower(): v for k, v in (values or {}).items()}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TrainError(f"unknown TrainConfig keys {unknown}; known: {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ks"] = list(self.ks)
        return d

    def identity(self) -> dict:
        """The fields that determine a run's result (not where or how verbosely it is run)."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in ("checkpoint_dir", "checkpoint_every", "progress", "eval_batch")
        }

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------- the trainer


def to_device(view: RetrievalView | None, device: torch.device) -> RetrievalView | None:
    """The view with its tensors on ``device`` (the same object when they already are)."""
    if view is None or view.queries.device == device:
        return view
    return dataclasses.replace(
        view, queries=view.queries.to(device), gallery=view.gallery.to(device), target=view.target.to(device)
    )


def own_identity(method: Method, train, val, tests: dict | None, config: TrainConfig) -> dict:
    """The identity of a run whose caller gave none (``train_run`` gives ``run_identity``): enough to prove a
    checkpoint is this run's own: the method's class and code, a digest of its initial parameters (the seed's
    draw), the views' digests and the training config. Without it, a trainer resumed any checkpoint of the same
    class and config, another experiment's among them."""
    import hashlib

    h = hashlib.sha1()
    for name, t in sorted(method.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {
        "method": f"{type(method).__module__}.{type(method).__qualname__}",
        "initial_parameters": h.hexdigest()[:16],
        "train": view_digest(train),
        "val": view_digest(val),
        "tests": {k: view_digest(v) for k, v in sorted((tests or {}).items())},
        "config": config.identity(),
        "code": source_digest([type(method).__module__, __name__]),
    }


class Trainer:
    """Trains ``method`` on ``train`` with ``config``; evaluates on ``val`` and ``tests`` (name -> view).

    identity: what determines the run (``run_identity``); it names the checkpoint folder and is
    checked on resume. callbacks: called as ``cb(trainer, step, loss)`` after every step (``step``
    counts from 1); an exception raised there interrupts the run like a crash would.
    """

    def __init__(
        self,
        method: Method,
        train: RetrievalView,
        val: RetrievalView | None,
        tests: dict[str, RetrievalView] | None,
        config: TrainConfig,
        identity: dict | None = None,
        callbacks: Iterable[Callable] = (),
        val_adapt: tuple | None = None,
    ):
        if not isinstance(method, Method):
            raise TrainError(f"the trainer needs a sbir_core Method, got {type(method).__name__}")
        self.config = config
        self.device = torch.device(config.device)
        self.method = method.to(self.device)
        self.train_view = to_device(train, self.device)
        self.val = to_device(val, self.device)
        self.tests = {k: to_device(v, self.device) for k, v in (tests or {}).items()}
        self.callbacks = list(callbacks)
        self.val_adapt = val_adapt[:2] if val_adapt else None
        self.sampler = get_sampler(method.sampler)
        self.optimizers = method.configure_optimizers(config)
        self.identity = identity or own_identity(method, train, val, tests, config)
        # checkpoints hold the global state, so any number of processes continues them: their fingerprint leaves
        # the process count out (the stored result's, ``RunResult.fingerprint``, keeps it)
        self.fingerprint = fingerprint({k: v for k, v in self.identity.items() if k != "processes"})
        self.generator = torch.Generator().manual_seed(config.seed)
        self.dist = D.context()  # this process's rank among the data-parallel processes (0 of 1 without)
        self.saved = 0  # checkpoints this process wrote
        self.step = 0
        self.history: list[dict] = []
        self.losses: list[float] = []
        self.last_finite: tuple[int, float] | None = None
        self.best_state: dict = {}
        self.best_key: tuple = ()

    # -- checkpoints

    @property
    def run_dir(self) -> Path | None:
        d = self.config.checkpoint_dir
        return None if d is None else Path(d) / self.fingerprint

    def _state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "model": self.method.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "losses": self.losses,
            "best_state": self.best_state,
            "best_key": list(self.best_key),
        }

    def save_checkpoint(self) -> Path:
        """Write ``step_<N>.pt`` and its ``.json`` (fingerprint, identity, SHA-256) atomically; keep the last two."""
        folder = self.run_dir
        if folder is None:
            raise TrainError("no checkpoint_dir in the TrainConfig")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step_{self.step:08d}.pt"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(self._state(), tmp)
        meta = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "identity": self.identity,
            "step": self.step,
            "sha256": file_sha256(tmp),
        }
        tmp_meta = path.with_name(f".{path.stem}.json.{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path)
        os.replace(tmp_meta, path.with_suffix(".json"))
        self.saved += 1
        for old in self._checkpoints()[KEEP_CHECKPOINTS:]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
        return path

    def _checkpoints(self, folder: Path | None = None) -> list[Path]:
        """The folder's checkpoints, newest first."""
        folder = folder or self.run_dir
        if folder is None or not folder.is_dir():
            return []
        found = [p for p in folder.glob("step_*.pt") if re.fullmatch(r"step_\d+\.pt", p.name)]
        return sorted(found, reverse=True)

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> bool:
        """Resume from ``path`` (a checkpoint or a run folder) or from this run's folder; False when none.

        A damaged checkpoint (checksum, unreadable) is reported with its path and renamed ``*.corrupt``,
        and the next older one is tried. A checkpoint of another run raises TrainError naming the
        fields that differ. Never runs code from the file.
        """
        if path is not None and Path(path).is_file():
            candidates = [Path(path)]
        else:
            candidates = self._checkpoints(Path(path) if path is not None else None)
        for ckpt in candidates:
            meta_path = ckpt.with_suffix(".json")
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("format") != CHECKPOINT_FORMAT:
                    raise ValueError(f"format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
            except (OSError, ValueError) as err:
                self._set_aside(ckpt, f"its metadata {meta_path.name} is missing or unreadable ({err})")
                continue
            if meta["fingerprint"] != self.fingerprint:
                mine = {k: v for k, v in self.identity.items() if k != "processes"}
                diff = differing_fields({k: v for k, v in meta.get("identity", {}).items() if k != "processes"}, mine)
                raise TrainError(
                    f"{ckpt}: checkpoint of another run (fingerprint {meta['fingerprint']}, this run "
                    f"{self.fingerprint}); differing fields: {', '.join(diff) or 'unknown'}. Remove it "
                    f"or use another checkpoint_dir"
                )
            if file_sha256(ckpt) != meta["sha256"]:
                self._set_aside(ckpt, "its SHA-256 does not match the one recorded when it was written")
                continue
            try:
                state = torch.load(ckpt, map_location=self.device, weights_only=True)
            except Exception as err:  # noqa: BLE001 - any unreadable file is set aside, never trusted
                self._set_aside(ckpt, f"torch.load failed ({type(err).__name__}: {err})")
                continue
            self._restore(state)
            return True
        return False

    def resume(self) -> bool:
        """Load this run's newest good checkpoint, if any (every rank of a data-parallel run reads the same
        one, after rank 0, which alone sets damaged ones aside); True when one was loaded."""
        if self.run_dir is None:
            return False
        if not self.dist.main:
            D.barrier()
        found = self.load_checkpoint()
        if self.dist.main:
            D.barrier()
        return found

    def _set_aside(self, ckpt: Path, why: str) -> None:
        warnings.warn(
            f"checkpoint {ckpt} is damaged: {why}; set aside as {ckpt.name}.corrupt, trying an older one",
            RuntimeWarning,
            stacklevel=3,
        )
        ckpt.rename(ckpt.with_name(ckpt.name + ".corrupt"))
        ckpt.with_suffix(".json").unlink(missing_ok=True)

    def _restore(self, state: dict) -> None:
        self.method.load_state_dict(state["model"])
        for opt, sd in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(sd)
        torch.set_rng_state(state["torch_rng"].cpu())
        self.generator.set_state(state["generator"].cpu())
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.losses = list(state["losses"])
        self.best_state = state["best_state"]
        self.best_key = tuple(state["best_key"])

    # -- loop

    def evaluate_now(self) -> dict:
        """Evaluate on val and tests; append to the history; update the val-selected state."""
        c = self.config
        rec = {"step": self.step, "loss": float(np.mean(self.losses)) if self.losses else math.nan}
        self.losses = []
        views = ([("val", self.val)] if self.val is not None else []) + list(self.tests.items())
        for name, view in views:
            adapt = self.val_adapt if name == "val" else None
            res = evaluate(self.method, view, c.ks, c.eval_batch, adapt=adapt)
            rec.update({f"{name}/{k}": v for k, v in res.metrics.items()})
        self.history.append(rec)
        if self.val is not None:
            # larger is better on every key; the negative step prefers the earliest of ties
            key = tuple(rec[f"val/acc_at_{k}"] for k in c.ks) + (-self.step,)
            if not self.best_key or key > self.best_key:
                self.best_key = key
                self.best_state = copy.deepcopy(self.method.state_dict())
        return rec

    def fit(self, resume: bool = True) -> RunResult:
        """Train to ``config.steps`` (continuing from this run's newest good checkpoint when ``resume``)."""
        from tqdm.auto import tqdm

        c = self.config
        ctx = self.dist
        if resume:
            self.resume()
        self.method.train()
        every_ckpt = c.checkpoint_every or c.eval_every
        bar = tqdm(
            total=c.steps, initial=self.step, disable=not c.progress or not ctx.main, desc=f"seed {c.seed}", leave=False
        )
        try:
            while self.step < c.steps:
                # every rank draws the same global batch (one generator, seeded alike) and keeps its shard
                batch = self.sampler(self.train_view, c.batch_size, self.generator, **self.method.sampler_options)
                if ctx.active:
                    batch = self.method.shard_batch(batch, ctx.rank, ctx.world)
                try:
                    value = D.mean_value(self.method.train_step(batch, self.optimizers))
                except NonFiniteLoss as err:
                    last = (
                        f"the last finite loss was {self.last_finite[1]:.6g} at step {self.last_finite[0]}"
                        if self.last_finite
                        else "no step had a finite loss"
                    )
                    where = f"; checkpoints kept in {self.run_dir}" if self.run_dir else ""
                    raise TrainError(f"training diverged at step {self.step + 1}: {err}; {last}{where}") from None
                if not math.isfinite(value):
                    raise TrainError(f"training diverged at step {self.step + 1}: loss {value}")
                self.step += 1
                self.last_finite = (self.step, value)
                self.losses.append(value)
                bar.update(1)
                if ctx.main and (self.step % c.eval_every == 0 or self.step == c.steps):
                    rec = self.evaluate_now()  # rank 0 only: the others go on to the next all-reduce and wait
                    bar.set_postfix({k: round(v, 3) for k, v in rec.items() if k != "step"})
                if ctx.main and self.run_dir is not None and (self.step % every_ckpt == 0 or self.step == c.steps):
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
        for name in self.tests if len(hist) else ():  # ranks other than 0 of a data-parallel run evaluate nothing
            col = f"{name}/acc_at_{ks[0]}"
            # idxmax returns the first maximum: the earliest step among ties
            row = hist.loc[hist[col].idxmax()]
            best_on_test[name] = {
                "step": int(row["step"]),
                **{f"acc_at_{k}": float(row[f"{name}/acc_at_{k}"]) for k in ks},
            }
        if self.val is not None and len(hist):
            step = -self.best_key[-1]
            row = hist.loc[hist["step"] == step].iloc[0]
            val_selected = {
                "step": int(step),
                **{
                    name: {f"acc_at_{k}": float(row[f"{name}/acc_at_{k}"]) for k in ks} for name in ["val", *self.tests]
                },
            }
        best = self.best_state or copy.deepcopy(self.method.state_dict())
        return RunResult(self.config.seed, hist, val_selected, best_on_test, best, fingerprint(self.identity))


def train_run(
    spec,
    train: RetrievalView,
    val: RetrievalView | None,
    tests: dict | None,
    config: TrainConfig,
    seed: int,
    store: bool = True,
    init: tuple | None = None,
    val_adapt: tuple | None = None,
    prefixes: Iterable[int] = (),
) -> RunResult:
    """One seed of ``spec`` trained with ``config`` (seed replaced): from the store of trained states
    when it holds this exact run (``sbir_core.store``), else trained (resuming from a checkpoint when
    ``config.checkpoint_dir`` holds one) and stored. init: (name, state), a state the method starts from
    (``Method.start_from``), named in the run's identity; ``state`` may be a function that loads it (called
    only when the run is trained, not when it comes from the store). val_adapt: (column, support_for, rule):
    validation adapts the method to each ``column`` value's support first, as a meta-learner is used
    (``evaluate``'s adapt; the rule, a sentence, goes into the identity). prefixes: shorter step counts whose
    runs are stored as well, from this one as it stood then (``_prefix_saver``): a chapter that compares
    variants at fewer steps with the full model trained as long reads them instead of training them again."""
    from sbir_core import store as S

    config = config.replace(seed=seed)
    identity = run_identity(spec, train, val, tests, config, init and init[0], val_adapt)
    key = fingerprint(identity)
    prefixes = sorted({int(n) for n in prefixes})
    for n in prefixes:
        if not 0 < n < config.steps or n % config.eval_every:
            raise TrainError(
                f"a stored prefix must be a multiple of eval_every ({config.eval_every}) below the run's "
                f"{config.steps} steps, got {n}: a run of {n} steps evaluates at its last step"
            )
    # One process trains a run: the entry's lock is held from looking to saving (chapters side by side ask for
    # the same baseline). Not in a data-parallel run, whose processes all train it together.
    held = S.training(key) if store and not D.context().active else contextlib.nullcontext()
    with held:
        if store:
            hit = S.load(key, identity)
            if hit is not None:
                return hit
        # the caller's random state is left as a hit leaves it: what follows does not depend on who trained
        with preserved_rng():
            start = init and (init[1]() if callable(init[1]) else init[1])  # before seeding: loading may train it
            seed_everything(seed)
            method = spec.build()
            if init is not None:
                method.start_from(start)
            callbacks = []
            if prefixes and store and not D.context().active:
                callbacks.append(_prefix_saver(spec, train, val, tests, config, init and init[0], val_adapt, prefixes))
            result = Trainer(method, train, val, tests, config, identity, callbacks, val_adapt).fit()
        if store and D.context().main:  # in a data-parallel run, rank 0 stores (the others evaluated nothing)
            S.save(key, identity, result)
    return result


def _prefix_saver(spec, train, val, tests, config: TrainConfig, init_name, val_adapt, steps: list[int]) -> Callable:
    """A trainer callback that stores the run at each of ``steps`` as the run of that many steps: the
    identity of ``config`` with ``steps=n``, the history to step n and the state validation chose by then.
    That is the shorter run itself when a method's updates do not depend on the total (no schedule over
    ``config.steps``; every method here) and step n is an evaluation step, as ``train_run`` requires:
    tests/test_stylemeup.py trains a run both ways and compares them. A run resumed past step n stores nothing
    for it (the shorter run is then trained when asked for)."""
    from sbir_core import store as S

    def save(trainer: Trainer, step: int, _loss: float) -> None:
        if step not in steps:
            return
        identity = run_identity(spec, train, val, tests, config.replace(steps=step), init_name, val_adapt)
        key = fingerprint(identity)
        with S.training(key):
            if S.load(key, identity) is None:
                S.save(key, identity, dataclasses.replace(trainer.result(), fingerprint=key))

    return save


def train_seeds(
    spec,
    train: RetrievalView,
    val: RetrievalView | None,
    tests: dict | None,
    config: TrainConfig,
    seeds: Iterable[int],
    store: bool = True,
    init=None,
    val_adapt: tuple | None = None,
    prefixes: Iterable[int] = (),
) -> MultiSeedResult:
    """``train_run`` for each seed: one fresh method per seed, initialised after ``seed_everything(seed)``;
    ``init(seed)`` gives the seed's starting state (``train_run``'s init), when given."""
    return MultiSeedResult(
        [train_run(spec, train, val, tests, config, s, store, init and init(s), val_adapt, prefixes) for s in seeds]
    )


def _examples(batch) -> int:
    """Embedding inputs an update reads: the rows of every floating-point tensor of a batch (sketches, photos,
    negatives; a meta-learner's tasks are lists of such dicts)."""
    if isinstance(batch, dict):
        return sum(_examples(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return sum(_examples(v) for v in batch)
    if torch.is_tensor(batch) and batch.is_floating_point() and batch.ndim >= 2:
        return int(batch.shape[0])
    return 0


def step_cost(spec, train: RetrievalView, config: TrainConfig, steps: int = 3, seed: int = 0) -> dict:
    """What one update of ``spec``'s method costs on ``train`` with ``config``'s batch: the examples it reads
    (``_examples``) and its wall time, the median of ``steps`` updates timed alone (a fresh method, seeded
    batches). For stating the budgets of compared arms: updates x examples, and updates x seconds."""
    import time

    if steps < 1:
        raise TrainError(f"step_cost needs steps >= 1, got {steps}")
    seed_everything(seed)
    method = spec.build()
    optimizers = method.configure_optimizers(config)
    sample, gen, wall, examples = get_sampler(method.sampler), torch.Generator(), [], 0
    for i in range(steps):
        batch = sample(train, config.batch_size, gen.manual_seed(seed + i), **method.sampler_options)
        examples = _examples(batch)
        t0 = time.perf_counter()
        method.train_step(batch, optimizers)
        wall.append(time.perf_counter() - t0)
    return {"examples": examples, "seconds": float(np.median(wall))}

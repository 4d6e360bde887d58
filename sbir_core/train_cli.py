"""Train a chapter's main model from the shell, in one process or many (``torchrun``).

    python -m sbir_core.train_cli --chapter 04_triplet_baseline --scale paper
    torchrun --nproc-per-node 2 -m sbir_core.train_cli --chapter 04_triplet_baseline --scale paper
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint host0:29500 -m sbir_core.train_cli --chapter 04_triplet_baseline --scale paper

The model is the chapter's own run (its parameters at that scale, ``--set NAME=VALUE`` to change one),
rebuilt from the chapter's recipe (``sbir_core.recipes.MAIN_RUNS``), so it lands in the store of
trained models under the key the chapter asks for: run the chapter afterwards and it loads the model
instead of training it. Rank 0 evaluates, writes checkpoints (``--checkpoint-dir``, on a file system
every node sees) and the store entry, and prints the result; with ``--checkpoint-dir`` the same
command resumes an interrupted run, with the same or another number of processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
import yaml

from sbir_core import distributed as D


def _assignment(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    if not name.isupper():
        raise argparse.ArgumentTypeError(f"chapter parameters are UPPER_CASE, got {name!r}")
    return name, yaml.safe_load(value)


def _fault(spec: str | None):
    """``RANK:STEP``: that rank kills itself (SIGKILL) after that step; for the tests of a lost process."""
    if not spec:
        return []
    rank, step = (int(x) for x in spec.split(":"))

    def cb(trainer, s, loss):
        if s == step and D.context().rank == rank:
            os.kill(os.getpid(), signal.SIGKILL)

    return [cb]


def main(argv=None) -> int:
    from sbir_core import playground as P
    from sbir_core.repro import seed_everything, set_threads
    from sbir_core.train import Trainer, fingerprint, run_identity

    ap = argparse.ArgumentParser(prog="python -m sbir_core.train_cli", description=__doc__.split("\n")[0])
    ap.add_argument("--chapter", required=True, help="e.g. 04_triplet_baseline (its main model)")
    ap.add_argument("--scale", default="ci", help="ci | paper: which parameters")
    ap.add_argument(
        "--set",
        type=_assignment,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a chapter parameter, e.g. --set STEPS=200 --set SEED=1",
    )
    ap.add_argument("--checkpoint-dir", default=None, help="checkpoints here; the same command resumes from them")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: the book's)")
    ap.add_argument("--no-store", action="store_true", help="train even if the store holds the run; do not store it")
    ap.add_argument("--out", type=Path, default=None, help="rank 0 writes the history and selection here (JSON)")
    ap.add_argument("--state", type=Path, default=None, help="rank 0 saves the selected state dict here")
    ap.add_argument("--fail-at", default=None, help=argparse.SUPPRESS)  # RANK:STEP, fault injection for the tests
    args = ap.parse_args(argv)

    from sbir_core import recipes as R

    if args.chapter not in R.MAIN_RUNS:
        ap.error(f"no trainable model for chapter {args.chapter!r}; known: {list(R.MAIN_RUNS)}")
    overrides = dict(args.set)
    _, run, seed = P._setup(P.Recipe(args.chapter, args.chapter), args.scale, overrides)
    spec, views, config = run.spec, run, run.config.replace(seed=seed)
    ctx = D.init_from_env(config.device)
    if args.threads:
        set_threads(args.threads)
    elif ctx.active:
        set_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world))))
    else:
        set_threads()
    config = config.replace(checkpoint_dir=args.checkpoint_dir, progress=False)
    if config.batch_size % ctx.world:
        ap.error(f"BATCH_SIZE {config.batch_size} does not divide among {ctx.world} processes")
    init = run.init(seed) if run.init else None  # the run it starts from (chapter 7: chapter 4's Triplet-SN)
    identity = run_identity(spec, views.train, views.val, views.tests, config, init and init[0], run.val_adapt)
    key = fingerprint(identity)
    from sbir_core import store as S

    t0 = time.perf_counter()
    result = None if args.no_store else S.load(key, identity)
    source = "store"
    if result is None:
        source = "trained"
        start_state = init and init[1]()  # before seeding (``train.train_run``): loading it may train it
        seed_everything(config.seed)
        method = spec.build()
        if init is not None:
            method.start_from(start_state)
        trainer = Trainer(
            method, views.train, views.val, views.tests, config, identity, _fault(args.fail_at), run.val_adapt
        )
        trainer.resume()
        start = trainer.step
        result = trainer.fit(resume=False)
        # every rank holds the whole model: the same digest on every rank shows the gradients were averaged
        digest = hashlib.sha1(
            b"".join(t.detach().cpu().contiguous().numpy().tobytes() for t in trainer.method.state_dict().values())
        ).hexdigest()[:16]
        print(
            f"[rank {ctx.rank}] checkpoints written: {trainer.saved}; final parameters {digest}",
            file=sys.stderr,
            flush=True,
        )
        if ctx.main and not args.no_store:
            S.save(key, identity, result)
    seconds = time.perf_counter() - t0
    if ctx.main:
        summary = {
            "chapter": args.chapter,
            "scale": args.scale,
            "key": key,
            "source": source,
            "world": ctx.world,
            "threads": torch.get_num_threads(),
            "seconds": seconds,
            "steps": config.steps,
            "batch_size": config.batch_size,
            "val_selected": result.val_selected,
            "history": result.history.to_dict("records"),
        }
        if source == "trained":
            summary["resumed_from_step"] = start
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1, default=str))
        if args.out:
            args.out.write_text(json.dumps(summary, indent=1, default=str))
        if args.state:
            torch.save(result.best_state, args.state)
    D.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

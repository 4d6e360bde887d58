"""The store of trained states: every trained run computed once, found again by its fingerprint.

A run is keyed by everything that determines it (``runs.run_identity``: the method and its
options, digests of the training, validation and test views' tensors, the training config with the
seed, the source of every package module the run executes, from the method to the metric code, and
the number of data-parallel processes); ``runs.fingerprint`` of that identity names its
entry, ``<cache>/store/<fingerprint>.pt`` with ``<fingerprint>.json`` beside it (the identity and
the file's SHA-256). A later chapter that asks for the same run (the Triplet-SN baseline of chapter
4, say) loads it instead of training it again; change any part of the identity and it is a new
entry. Entries are read with ``torch.load(weights_only=True)``, which cannot run code, after their
checksum and identity are verified; a damaged entry is reported, deleted and trained again.
Processes side by side train each run once: ``training`` holds the entry's lock while one looks again
and trains it; another asking for the same run waits, then loads it.

``python -m sbir_core.store`` lists the entries.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
import warnings
from pathlib import Path

import torch

from sbir_core.data.base import cache_dir
from sbir_core.runs import RunResult, differing_fields, file_sha256


def root() -> Path:
    """``$SBIR_STORE`` or ``<cache>/store``."""
    path = Path(os.environ.get("SBIR_STORE", cache_dir() / "store"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _paths(key: str) -> tuple[Path, Path]:
    return root() / f"{key}.pt", root() / f"{key}.json"


def training(key: str):
    """The lock to hold while looking for ``key`` and, on a miss, training and saving it (``train.train_run``):
    a context manager (``cache.computing`` on the entry)."""
    from sbir_core.cache import computing

    return computing(_paths(key)[0])


def load(key: str, identity: dict | None = None):
    """The stored ``RunResult`` of ``key``, verified; None when absent (or damaged, which is reported)."""
    path, meta_path = _paths(key)
    if not path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if file_sha256(path) != meta["sha256"]:
            raise ValueError("its SHA-256 does not match the recorded one")
        if identity is not None and meta["identity"] != json.loads(json.dumps(identity, default=str)):
            raise ValueError("its identity differs: " + ", ".join(differing_fields(meta["identity"], identity)))
        result = RunResult.from_plain(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - any damaged entry is dropped and recomputed, never trusted
        warnings.warn(
            f"stored run {path} is unusable ({type(err).__name__}: {err}); deleting it, it will be trained again",
            RuntimeWarning,
            stacklevel=2,
        )
        path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return None
    return result


def save(key: str, identity: dict, result) -> Path:
    """Store a ``RunResult`` under ``key`` atomically, with its identity and checksum."""
    path, meta_path = _paths(key)
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp, tmp_meta = path.with_name(f".{path.name}.{tag}.tmp"), meta_path.with_name(f".{meta_path.name}.{tag}.tmp")
    try:
        torch.save(result.to_plain(), tmp)
        tmp_meta.write_text(
            json.dumps({"identity": identity, "sha256": file_sha256(tmp)}, indent=1, sort_keys=True, default=str)
        )
        os.replace(tmp, path)
        os.replace(tmp_meta, meta_path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    return path


def entries() -> list[dict]:
    """One dict per stored run: key, method, seed, steps, size in bytes."""
    out = []
    for meta_path in sorted(root().glob("*.json")):
        try:
            ident = json.loads(meta_path.read_text())["identity"]
        except (OSError, ValueError, KeyError):
            continue
        pt = meta_path.with_suffix(".pt")
        out.append(
            {
                "key": meta_path.stem,
                "method": ident["method"]["name"],
                "seed": ident["config"]["seed"],
                "steps": ident["config"]["steps"],
                "bytes": pt.stat().st_size if pt.exists() else 0,
            }
        )
    return out


def main() -> int:
    rows = entries()
    for r in rows:
        print(f"{r['key']}  {r['method']:<14} seed {r['seed']:<4} {r['steps']:>7} steps  {r['bytes'] / 1e6:6.1f} MB")
    print(f"{len(rows)} stored runs in {root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

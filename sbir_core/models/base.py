"""The method contract: what every SBIR method gives the one trainer and the one evaluator.

A method is an ``nn.Module`` subclass of ``Method``. It **must** provide:

* ``sampler`` (class attribute): the name of the batch sampler the trainer draws its batches
  with (``sbir_core.samplers.SAMPLERS``: "triplets", "drawer_episodes", "category_episodes", or one
  the method's module registers), and ``sampler_options`` (instance dict) passed to it;
* ``training_loss(batch) -> Tensor``: the scalar loss of one batch from that sampler;
* ``embed_query(x, style=None)`` and ``embed_gallery(x)``: (N, C, S, S) images to (N, D) embeddings
  compared by Euclidean distance (or, for pairwise methods, to per-item features).

It **may** provide (the trainer and evaluator look for these, and use defaults otherwise):

* ``configure_optimizers(config) -> list[Optimizer]``: e.g. two optimisers over different
  parameter groups (default: one Adam/AdamW over every parameter, ``config.lr``);
* ``train_step(batch, optimizers) -> float``: a step that is not "one loss, one backward"
  (meta-learning with an inner loop); the default zeroes, back-propagates ``training_loss`` and
  steps every optimiser, and refuses a non-finite loss;
* ``pairwise = True`` and ``pair_distance(q_feats, g_feats) -> (P,)``: for models whose embedding of
  a sketch depends on the photo it is compared with; ``embed_query`` / ``embed_gallery`` then return
  per-item features (selected with ``select``), and the evaluator scores (query, photo) pairs, all of
  them or a shortlist made by another method;
* ``shard_batch(batch, rank, world)``: this process's part of a global batch in data-parallel training
  (default ``sbir_core.distributed.shard``: a contiguous slice of every per-item tensor and list);
* ``adapt(support) -> Method``: test-time adaptation on a support batch (the "triplets" sampler's
  keys); it returns a *new* adapted method and never changes ``self``;
* ``styled = True``: ``embed_query(x, style=exemplars)`` takes (N, K, C, S, S) style exemplar
  images (a sketch plus the style it should be retrieved in).

Methods are built by name from the registry (``build_method``), so that a trained state can be
stored under its ``MethodSpec`` and rebuilt later (``sbir_core.store``).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field

import torch
from torch import nn

from sbir_core.errors import SBIRError
from sbir_core.models.registry import METHODS


class MethodError(SBIRError, RuntimeError):
    """A method that does not fulfil the contract, or a bad method option."""


class NonFiniteLoss(SBIRError, FloatingPointError):
    """A NaN or infinite training loss; the trainer stops with the step and the last finite loss."""


class Method(nn.Module):
    """Base class of every method; see the module docstring for the contract."""

    sampler: str = "triplets"
    pairwise: bool = False
    styled: bool = False

    def __init__(self):
        super().__init__()
        self.sampler_options: dict = {}

    # -- required
    def training_loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement training_loss(batch)")

    def embed_query(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement embed_query(x)")

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement embed_gallery(x)")

    # -- optional, with defaults
    def configure_optimizers(self, config) -> list[torch.optim.Optimizer]:
        """One Adam (or AdamW) over every trainable parameter, at ``config.lr``."""
        opt = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        params = [p for p in self.parameters() if p.requires_grad]
        # foreach: the update as one call over all parameters, not PyTorch's CPU default of a Python loop over them
        # (14 % faster a step here; on CUDA it is the default)
        return [opt(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)]

    def train_step(self, batch: dict, optimizers: list[torch.optim.Optimizer]) -> float:
        """Zero, back-propagate ``training_loss(batch)``, average the gradients over the processes of a
        data-parallel run (``sync_gradients``), step every optimiser; return the loss."""
        loss = self.training_loss(batch)
        check_finite(loss)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients()
        for opt in optimizers:
            opt.step()
        return float(loss.detach())

    def sync_gradients(self) -> None:
        """Average every gradient over the processes of a data-parallel run (a no-op in one process).
        A ``train_step`` of its own must call it between its backward passes and its optimiser steps."""
        from sbir_core.distributed import average_gradients

        average_gradients(self.parameters())

    def shard_batch(self, batch: dict, rank: int, world: int) -> dict:
        """This process's part of a global batch (``sbir_core.distributed.shard``)."""
        from sbir_core.distributed import shard

        return shard(batch, rank, world)

    def select(self, feats, idx: torch.Tensor):
        """Rows ``idx`` of features returned by ``embed_query`` / ``embed_gallery`` (pairwise methods)."""
        return feats[idx]

    def pair_distance(self, q_feats, g_feats) -> torch.Tensor:
        raise MethodError(f"{type(self).__name__} is not pairwise: it has no pair_distance")

    def adapt(self, support: dict) -> Method:
        raise MethodError(f"{type(self).__name__} does not adapt at test time")

    def start_from(self, state: dict) -> None:
        """Start training from another run's loaded state (a method that builds on a trained one)."""
        raise MethodError(f"{type(self).__name__} does not start from another run's state")

    @property
    def adaptive(self) -> bool:
        """Whether the method overrides ``adapt``."""
        return type(self).adapt is not Method.adapt


def check_finite(loss: torch.Tensor) -> torch.Tensor:
    """The loss itself, or NonFiniteLoss when it is NaN or infinite."""
    if not torch.isfinite(loss.detach()).all():
        raise NonFiniteLoss(f"the training loss is {float(loss.detach())}")
    return loss


# ---------------------------------------------------------------------- registry

# name -> "module:builder", in sbir_core.models.registry (outside the fingerprinted sources, see there)


def register(name: str, target: str) -> None:
    """Add a method to the registry: ``register("my_method", "my_package.module:build")``."""
    if ":" not in target:
        raise MethodError(f"target must look like 'module:function', got {target!r}")
    METHODS[name] = target


@dataclass(frozen=True)
class MethodSpec:
    """A method by registry name and options: enough to rebuild it, and part of a stored state's key."""

    name: str
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.name not in METHODS:
            raise MethodError(f"unknown method {self.name!r}; known: {', '.join(sorted(METHODS))}")
        try:
            json.dumps(self.options, sort_keys=True)
        except TypeError as err:
            raise MethodError(f"method options must be plain values (JSON), got {self.options!r}") from err

    def build(self) -> Method:
        module, func = METHODS[self.name].split(":")
        method = getattr(importlib.import_module(module), func)(**self.options)
        if not isinstance(method, Method):
            raise MethodError(f"{self.name}: the builder returned a {type(method).__name__}, not a Method")
        return method

    def as_dict(self) -> dict:
        return {"name": self.name, "options": self.options}

    def sources(self) -> list[str]:
        """The modules whose source determines this method's training: its own and the shared ones."""
        return sorted(
            {
                METHODS[self.name].split(":")[0],
                "sbir_core.models.base",
                "sbir_core.models.encoders",
                "sbir_core.samplers",
                "sbir_core.train",
            }
        )


def build_method(name: str, **options) -> Method:
    """A method by registry name with its options."""
    return MethodSpec(name, options).build()

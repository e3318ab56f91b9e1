"""Calibrate the user's own model: load it from a factory or a ``torch.export`` file, derive the
variants that apply to it by walking its module tree, and measure them like the built-in DLRM.

The factory protocol (``peaksim calibrate --model REF``; REF is ``package.module:function`` or
``path/to/file.py:function``): the function takes no arguments and returns either a
:class:`ModelSpec` or a tuple ``(module, sample)`` / ``(module, sample, labels)``:

- ``module``: a ``torch.nn.Module``; ``module(*sample(b, seed))`` scores ``b`` items and returns
  a tensor whose first dimension is ``b`` (one score per item, e.g. a click probability; a tuple
  or list output is scored by its first element);
- ``sample(batch_items: int, seed: int) -> tuple[torch.Tensor, ...]``: seeded inputs for a batch
  of ``batch_items`` items (a single tensor is taken as a 1-tuple);
- ``labels(batch_items: int, seed: int) -> torch.Tensor`` (optional): 0/1 labels of the *same*
  items ``sample(batch_items, seed)`` returns; with them the profile records AUC and AUC delta.

``--model file.pt2``: a program saved with ``torch.export.save``, exported with its example
inputs and a *dynamic* first dimension (the batch) on every input; a batch of ``b`` items
repeats the example inputs' rows (row ``(i + seed) mod n`` for item ``i``).

Variants derived (each is built and run once on a sampled batch; one that does not apply or
fails is recorded as skipped with the reason, never a crash):

- ``fp32``: the module as given;
- ``bf16``: a copy in bfloat16 (floating inputs cast to bf16, outputs back to fp32);
- ``int8``: dynamic int8 quantization of every ``nn.Linear`` (only if the model has one; CPU);
- ``int8_emb``: every ``nn.EmbeddingBag`` (sum or mean, no padding index or max norm) replaced
  by row-wise int8 tables run by the direct ``quantized.embedding_bag_byte_rowwise_offsets`` op,
  plus int8 Linear layers, as the built-in ``int8_emb`` (only if it has such a table; CPU);
- ``pruned``: chains of two or more ``nn.Linear`` inside an ``nn.Sequential`` (only elementwise
  activations or dropout between them): every hidden width halved, keeping the units with the
  largest L2 norm of incoming weights, then the new layers fine-tuned briefly on the fp32 scores;
- user-given variants (``--variant-factory NAME=REF``, e.g. a distilled student): a factory of
  the same form whose module takes the same inputs (its own sampler is not used).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import logging
import os
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simulator.calibration.variants import quantize_linear, quiet_quantization

AUTO_VARIANTS = ("fp32", "bf16", "int8", "int8_emb", "pruned")
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid,
               nn.Hardswish, nn.Mish, nn.Dropout, nn.Identity)
Sampler = Callable[[int, int], tuple[torch.Tensor, ...]]
Labeler = Callable[[int, int], torch.Tensor]


class ModelSpecError(ValueError):
    """A model factory or exported program cannot be used; the message is one line."""


@dataclass
class ModelSpec:
    """A model to calibrate: the module, its seeded input sampler and optional labels.

    ``sample(batch_items, seed)`` returns the forward's positional inputs for that many items;
    ``labels(batch_items, seed)`` the 0/1 labels of the same items (or None: no AUC).
    """

    module: nn.Module
    sample: Sampler
    labels: Labeler | None = None
    name: str = "model"
    #: the model's own implementation of named variants, used instead of the derived one:
    #: ``builders[name](fp32_module, train_steps) -> (module, how)`` (the built-in DLRM's
    #: pruning, int8 tables and distilled student are its own)
    builders: dict[str, Callable[[nn.Module, int], tuple[nn.Module, str]]] = field(
        default_factory=dict)
    #: a variant's architecture for the profile's ``model.variants`` (what ``profile
    #: project`` reads): ``architecture(name, module) -> dict``
    architecture: Callable[[str, nn.Module], dict[str, Any]] | None = None
    #: extra fields for the profile's ``model`` section (e.g. the DLRM's preset and config)
    info: dict[str, Any] = field(default_factory=dict)
    #: the requests PeakSim's serving harness sends (a ``serving.ServeInputs``); None: rows of
    #: the sampler (``serving.own_inputs``)
    serving_inputs: Callable[[], Any] | None = None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text[:300]}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_ref(ref: str, what: str = "--model") -> tuple[str, str]:
    """'module:function' or 'path.py:function' -> (module or path, function)."""
    target, sep, func = ref.rpartition(":")
    if not sep or not target or not func or not func.isidentifier():
        raise ModelSpecError(f"{what} {ref}: expected module:function, path/to/file.py:function "
                             "or a .pt2 file")
    return target, func


@contextmanager
def _cwd_on_path() -> Iterator[None]:
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_factory(ref: str, what: str = "--model") -> tuple[Callable[[], Any], dict[str, Any]]:
    """Import the factory function named by ``ref``; return it and its identity (reference,
    source file and the file's SHA-256)."""
    target, func = split_ref(ref, what)
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ModelSpecError(f"{what} {ref}: file {target} not found")
        mod_name = "peaksim_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
        # imported once per process: its classes must stay the ones torch.save pickles
        module = sys.modules.get(mod_name)
        if module is None:
            try:
                spec = importlib.util.spec_from_file_location(mod_name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(mod_name, None)
                raise ModelSpecError(f"{what} {ref}: importing {target} failed: "
                                     f"{_one_line(exc)}") from None
    else:
        try:
            with _cwd_on_path():
                module = importlib.import_module(target)
        except Exception as exc:
            raise ModelSpecError(f"{what} {ref}: cannot import module '{target}': "
                                 f"{_one_line(exc)}") from None
    fn = getattr(module, func, None)
    if fn is None:
        raise ModelSpecError(f"{what} {ref}: module '{target}' has no attribute '{func}'")
    if not callable(fn):
        raise ModelSpecError(f"{what} {ref}: '{func}' is not callable (it is a "
                             f"{type(fn).__name__})")
    src = getattr(module, "__file__", None)
    ident: dict[str, Any] = {"factory": ref}
    if src and Path(src).is_file():
        ident["file"] = str(src)
        ident["sha256"] = _sha256(Path(src))
    return fn, ident


def _as_spec(obj: Any, ref: str, what: str) -> ModelSpec:
    if isinstance(obj, ModelSpec):
        return obj
    if isinstance(obj, tuple) and len(obj) in (2, 3):
        return ModelSpec(obj[0], obj[1], obj[2] if len(obj) == 3 else None)
    raise ModelSpecError(f"{what} {ref}: the factory returned a {type(obj).__name__}; expected "
                         "a ModelSpec or a tuple (module, sample) or (module, sample, labels)")


def scores_of(out: Any) -> torch.Tensor:
    """The score tensor of a forward's output (a tuple or list is scored by its first item)."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the forward returned a {type(out).__name__}, not a tensor of scores")
    return out


def sample_inputs(spec: ModelSpec, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """The sampler's inputs for ``batch`` items, always a tuple of tensors."""
    out = spec.sample(batch, seed)
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out)


def check_spec(spec: ModelSpec, ref: str, what: str = "--model", batch: int = 3) -> None:
    """Refuse a spec of the wrong shape, naming the problem in one line: not a Module, a
    sampler that is missing, fails or returns non-tensors, a forward that fails on the sampled
    batch or does not return one score per item, labels of the wrong length."""
    if not isinstance(spec.module, nn.Module):
        raise ModelSpecError(f"{what} {ref}: the model is a {type(spec.module).__name__}, not a "
                             "torch.nn.Module")
    if not callable(spec.sample):
        raise ModelSpecError(f"{what} {ref}: the input sampler is missing or not callable (got "
                             f"{type(spec.sample).__name__}); expected sample(batch_items, seed)")
    try:
        raw = spec.sample(batch, 0)
    except Exception as exc:
        raise ModelSpecError(f"{what} {ref}: sample({batch}, 0) failed: "
                             f"{_one_line(exc)}") from None
    items = (raw,) if isinstance(raw, torch.Tensor) else raw
    if not isinstance(items, (tuple, list)) or not all(isinstance(t, torch.Tensor)
                                                       for t in items):
        kinds = ([type(t).__name__ for t in items] if isinstance(items, (tuple, list))
                 else type(items).__name__)
        raise ModelSpecError(f"{what} {ref}: sample({batch}, 0) must return a tuple of tensors; "
                             f"got {kinds}")
    try:
        with torch.inference_mode():
            out = scores_of(_eval(spec.module)(*items))
    except Exception as exc:
        raise ModelSpecError(f"{what} {ref}: the forward pass failed on sample({batch}, 0): "
                             f"{_one_line(exc)}") from None
    if out.dim() == 0 or out.shape[0] != batch:
        raise ModelSpecError(f"{what} {ref}: the forward returned shape {tuple(out.shape)} for "
                             f"{batch} items; expected one score per item (first dim {batch})")
    if spec.labels is not None:
        if not callable(spec.labels):
            raise ModelSpecError(f"{what} {ref}: labels is not callable")
        try:
            lab = spec.labels(batch, 0)
        except Exception as exc:
            raise ModelSpecError(f"{what} {ref}: labels({batch}, 0) failed: "
                                 f"{_one_line(exc)}") from None
        if not isinstance(lab, torch.Tensor) or lab.numel() != batch:
            raise ModelSpecError(f"{what} {ref}: labels({batch}, 0) must return a tensor of "
                                 f"{batch} 0/1 labels")


def load_factory(ref: str, what: str = "--model") -> tuple[ModelSpec, dict[str, Any]]:
    """Import, call and check a factory; return the spec and its identity."""
    fn, ident = import_factory(ref, what)
    try:
        obj = fn()
    except Exception as exc:
        raise ModelSpecError(f"{what} {ref}: the factory raised {_one_line(exc)}") from None
    spec = _as_spec(obj, ref, what)
    check_spec(spec, ref, what)
    _eval(spec.module)
    return spec, ident


def _exported_sampler(examples: tuple[torch.Tensor, ...]) -> Sampler:
    n = int(examples[0].shape[0])

    def sample(batch_items: int, seed: int) -> tuple[torch.Tensor, ...]:
        rows = (torch.arange(batch_items) + seed) % n
        return tuple(t[rows] for t in examples)

    return sample


def load_exported(path_str: str) -> tuple[ModelSpec, dict[str, Any]]:
    """Load a ``torch.export.save`` program; its inputs must have a dynamic batch (first) dim."""
    path = Path(path_str).expanduser()
    what = f"--model {path_str}"
    if not path.is_file():
        raise ModelSpecError(f"{what}: file not found")
    if not zipfile.is_zipfile(path):
        raise ModelSpecError(f"{what}: not a torch.export program (not a .pt2 archive; save one "
                             "with torch.export.save)")
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.CRITICAL)  # torch logs a traceback before it raises
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise ModelSpecError(f"{what}: cannot load the exported program: "
                             f"{_one_line(exc)}") from None
    finally:
        log.setLevel(level)
    args, kwargs = ep.example_inputs or ((), {})
    if kwargs or not args or not all(isinstance(t, torch.Tensor) for t in args):
        raise ModelSpecError(f"{what}: the program must carry positional tensor example inputs "
                             "(export with torch.export.export(model, args) and save it)")
    user = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            if shape is None or len(shape) == 0:
                raise ModelSpecError(f"{what}: input '{node.name}' has no batch dimension")
            if isinstance(shape[0], int):
                raise ModelSpecError(
                    f"{what}: the batch dimension (dim 0) of input '{node.name}' is static "
                    f"({shape[0]}); export with dynamic_shapes marking dim 0 of every input "
                    "with torch.export.Dim('batch') so PeakSim can vary the batch size")
    if len({int(t.shape[0]) for t in args}) != 1:
        raise ModelSpecError(f"{what}: the example inputs disagree on the batch size (dim 0)")
    spec = ModelSpec(ep.module(), _exported_sampler(tuple(args)), None, path.stem)
    check_spec(spec, path_str, "--model")
    return spec, {"exported_program": str(path.resolve()), "sha256": _sha256(path),
                  "example_batch": int(args[0].shape[0])}


_LOADED: dict[str, tuple[ModelSpec, dict[str, Any]]] = {}


def load_model(ref: str) -> tuple[ModelSpec, dict[str, Any]]:
    """A factory reference or a .pt2 file; raise ModelSpecError (one line) when unusable.
    Loaded once per process (the CLI checks it before measuring in the same process)."""
    if ref not in _LOADED:
        _LOADED[ref] = load_exported(ref) if ref.endswith(".pt2") else load_factory(ref)
    return _LOADED[ref]


def load_user_variant(name: str, ref: str) -> tuple[nn.Module, dict[str, Any]]:
    """A user-given variant: a factory returning a Module, a ModelSpec or a tuple whose first
    item is the Module (its sampler, if any, is not used)."""
    what = f"--variant-factory {name}="
    fn, ident = import_factory(ref, what.rstrip("="))
    try:
        obj = fn()
    except Exception as exc:
        raise ModelSpecError(f"{what}{ref}: the factory raised {_one_line(exc)}") from None
    mod = obj.module if isinstance(obj, ModelSpec) else (
        obj[0] if isinstance(obj, tuple) and obj else obj)
    if not isinstance(mod, nn.Module):
        raise ModelSpecError(f"{what}{ref}: the factory returned a {type(mod).__name__}, not a "
                             "torch.nn.Module")
    return _eval(mod), ident


def _deepcopy(module: nn.Module) -> nn.Module:
    """``copy.deepcopy``, silencing exactly the FutureWarning torch 2.13 emits when copying an
    exported program's module (its pytree spec check)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is "
                                "deprecated", category=FutureWarning)
        return copy.deepcopy(module)


def _eval(module: nn.Module) -> nn.Module:
    """``module.eval()``, where supported (an exported program's module refuses it)."""
    try:
        return module.eval()
    except NotImplementedError:
        return module


def model_stats(module: nn.Module) -> dict[str, int]:
    """Parameter count and bytes of parameters and buffers."""
    params = list(module.parameters())
    bufs = list(module.buffers())
    return {"parameters": int(sum(p.numel() for p in params)),
            "parameter_bytes": int(sum(p.numel() * p.element_size() for p in params)),
            "buffer_bytes": int(sum(b.numel() * b.element_size() for b in bufs))}


# ---------------------------------------------------------------------------------- variants


def _cast_floats(x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, (tuple, list)):
        return type(x)(_cast_floats(t, dtype) for t in x)
    return x


class BF16Module(nn.Module):
    """Runs a model in bfloat16: floating inputs cast to bf16, floating outputs back to fp32."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = _deepcopy(model).to(torch.bfloat16)

    def forward(self, *args: Any) -> Any:
        return _cast_floats(self.model(*_cast_floats(args, torch.bfloat16)), torch.float32)


class RowwiseInt8EmbeddingBag(nn.Module):
    """An ``nn.EmbeddingBag`` (sum or mean) with row-wise int8 rows (per-row fp32 scale and
    bias), run by the direct ``quantized.embedding_bag_byte_rowwise_offsets`` op (the
    ``torch.ao.nn.quantized.EmbeddingBag`` module is ~5x slower per call)."""

    def __init__(self, bag: nn.EmbeddingBag) -> None:
        super().__init__()
        w = bag.weight.detach().float().contiguous()
        self.register_buffer("packed", torch.ops.quantized.embedding_bag_byte_prepack(w))
        self.mean = bag.mode == "mean"
        self.include_last_offset = bag.include_last_offset

    def forward(self, input: torch.Tensor, offsets: torch.Tensor | None = None,
                per_sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        if input.dim() == 2:
            b, n = input.shape
            offsets = torch.arange(0, b * n, n, device=input.device)
            input = input.reshape(-1)
        assert offsets is not None, "a 1-D input needs offsets"
        input, offsets = input.contiguous(), offsets.contiguous()  # the op requires it
        out = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
            self.packed, input, offsets, mode=0, per_sample_weights=per_sample_weights,
            include_last_offset=self.include_last_offset)
        if self.mean:  # the op sums whatever mode it is given
            ends = offsets[1:] if self.include_last_offset else torch.cat(
                [offsets[1:], offsets.new_tensor([input.numel()])])
            starts = offsets[:-1] if self.include_last_offset else offsets
            out = out / (ends - starts).clamp_min(1).unsqueeze(1).to(out.dtype)
        return out


def _quantizable_bag(m: nn.EmbeddingBag) -> str | None:
    """Why a table cannot be row-wise quantized, or None."""
    if m.mode not in ("sum", "mean"):
        return f"mode '{m.mode}'"
    if m.padding_idx is not None:
        return "padding_idx"
    if m.max_norm is not None:
        return "max_norm"
    return None


def quantize_embedding_bags(model: nn.Module) -> tuple[nn.Module, list[str], dict[str, str]]:
    """Copy of ``model`` with every quantizable EmbeddingBag replaced by a
    :class:`RowwiseInt8EmbeddingBag`; returns (copy, replaced names, kept names -> why)."""
    new = _deepcopy(model)
    done, kept = [], {}
    for name, m in list(new.named_modules()):
        if isinstance(m, nn.EmbeddingBag):
            why = _quantizable_bag(m)
            if why:
                kept[name] = why
            elif name:
                new.set_submodule(name, RowwiseInt8EmbeddingBag(m))
                done.append(name)
            else:  # the model is the table itself
                return RowwiseInt8EmbeddingBag(m), ["(root)"], {}
    return new, done, kept


def linear_chains(model: nn.Module) -> list[tuple[str, list[int]]]:
    """(Sequential's name, positions of its Linear layers) for every run of >= 2 Linear layers
    in an ``nn.Sequential`` with only elementwise modules (activations, dropout) between them."""
    chains: list[tuple[str, list[int]]] = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Sequential):
            continue
        run: list[int] = []
        for i, child in enumerate(m):
            if isinstance(child, nn.Linear):
                run.append(i)
            elif not isinstance(child, ELEMENTWISE):
                if len(run) >= 2:
                    chains.append((name, run))
                run = []
        if len(run) >= 2:
            chains.append((name, run))
    return chains


def _prune_chain(seq: nn.Sequential, idx: list[int], ratio: float) -> list[nn.Linear]:
    """Cut the hidden widths of one Linear chain in place (units with the largest L2 norm of
    their incoming weights stay); the chain's input and output widths stay. Returns the new
    layers."""
    new_layers: list[nn.Linear] = []
    prev: torch.Tensor | None = None
    with torch.no_grad():
        for k, i in enumerate(idx):
            old = seq[i]
            assert isinstance(old, nn.Linear)
            w = old.weight if prev is None else old.weight[:, prev]
            if k < len(idx) - 1:
                n = max(1, int(old.out_features * ratio))
                keep = torch.sort(torch.topk(w.norm(dim=1), n).indices).values
            else:
                keep = torch.arange(old.out_features, device=w.device)
            lin = nn.Linear(w.shape[1], len(keep), bias=old.bias is not None,
                            device=w.device, dtype=w.dtype)
            lin.weight.copy_(w[keep])
            if old.bias is not None:
                lin.bias.copy_(old.bias[keep])
            seq[i] = lin
            new_layers.append(lin)
            prev = keep
    return new_layers


def prune_linear_chains(model: nn.Module, ratio: float = 0.5) -> tuple[nn.Module,
                                                                      list[nn.Linear], str]:
    """Copy of ``model`` with every Linear chain's hidden widths x ``ratio``; returns (copy,
    new layers, description). Raises ValueError when no chain has a hidden width to cut."""
    new = _deepcopy(model)
    chains = [(n, i) for n, i in linear_chains(new)
              if any(new.get_submodule(n)[j].out_features > 1 for j in i[:-1])]
    if not chains:
        raise ValueError("no chain of consecutive nn.Linear layers in an nn.Sequential with a "
                         "hidden width to cut")
    layers: list[nn.Linear] = []
    desc = []
    for name, idx in chains:
        seq = new.get_submodule(name)
        before = [seq[j].out_features for j in idx[:-1]]
        layers += _prune_chain(seq, idx, ratio)
        after = [seq[j].out_features for j in idx[:-1]]
        desc.append(f"{name or '(root)'}: hidden {before} -> {after}")
    return new, layers, "; ".join(desc)


def fine_tune(student: nn.Module, teacher: nn.Module, params: list[nn.Parameter],
              spec: ModelSpec, steps: int, batch: int = 256, lr: float = 5e-3,
              device: str = "cpu") -> float:
    """Train ``params`` of the student to match the teacher's scores (MSE) on fresh seeded
    batches; other parameters stay frozen. Returns the last batch's MSE."""
    if steps <= 0 or not params:
        return float("nan")
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss = torch.tensor(0.0)
    student.train()
    for step in range(steps):
        x = tuple(t.to(device) for t in sample_inputs(spec, batch, 900_001 + step))
        with torch.no_grad():
            target = scores_of(teacher(*x)).float()
        loss = nn.functional.mse_loss(scores_of(student(*x)).float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    for p in params:
        p.requires_grad_(False)
    _eval(student)
    return float(loss.detach())


@dataclass
class Variants:
    """Built variants (name -> module, on the device), how each was derived, and the skipped
    ones with the reason."""

    models: dict[str, nn.Module] = field(default_factory=dict)
    derived: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _has(model: nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) for m in model.modules())


def build_variants(spec: ModelSpec, names: list[str] | None, device: str = "cpu",
                   train_steps: int = 300,
                   user: dict[str, nn.Module] | None = None) -> Variants:
    """Derive and build the requested variants (None: every one that applies, and the user's).
    Each is run once on a sampled batch; a failure skips it with the reason."""
    base = _eval(spec.module)
    user = user or {}
    wanted = list(names) if names is not None else [
        *spec.builders, *(a for a in AUTO_VARIANTS if a not in spec.builders), *user]
    out = Variants()
    exported = (" (an exported program calls aten ops, not modules: give the factory instead "
                "of the .pt2 file to derive this variant)"
                if isinstance(base, torch.fx.GraphModule) else "")
    cpu_only = "runs on CPU only (torch's dynamic int8 and int8 embedding ops have no CUDA kernels)"

    def build(name: str) -> tuple[nn.Module, str]:
        if name in user:
            return user[name], "user-given (--variant-factory)"
        if name in spec.builders:
            return spec.builders[name](base, train_steps)
        if name == "fp32":
            return base, "the model as given"
        if name == "bf16":
            return BF16Module(base), "all weights and activations in bfloat16"
        if name == "int8":
            if not _has(base, nn.Linear):
                raise ValueError("the model has no nn.Linear layer to quantize" + exported)
            if device != "cpu":
                raise ValueError(cpu_only)
            n = sum(isinstance(m, nn.Linear) for m in base.modules())
            return quantize_linear(base), f"dynamic int8 quantization of {n} nn.Linear layers"
        if name == "int8_emb":
            if not _has(base, nn.EmbeddingBag):
                raise ValueError("the model has no nn.EmbeddingBag table to quantize" + exported)
            if device != "cpu":
                raise ValueError(cpu_only)
            q, done, kept = quantize_embedding_bags(base)
            if not done:
                raise ValueError("no nn.EmbeddingBag is row-wise quantizable: "
                                 + ", ".join(f"{k} ({v})" for k, v in kept.items()))
            how = f"row-wise int8 tables: {len(done)} nn.EmbeddingBag replaced"
            if kept:
                how += "; kept fp32: " + ", ".join(f"{k} ({v})" for k, v in kept.items())
            if _has(q, nn.Linear):
                q = quantize_linear(q)
                how += "; plus dynamic int8 nn.Linear"
            return q, how
        if name == "pruned":
            if not _has(base, nn.Linear):
                raise ValueError("the model has no nn.Linear layer to prune" + exported)
            student, layers, how = prune_linear_chains(base)
            params = [p for lin in layers for p in lin.parameters()]
            mse = fine_tune(student, base, params, spec, train_steps, device=device)
            return student, (f"structured pruning, hidden widths halved by L2 norm ({how}); "
                             f"fine-tuned {train_steps} steps on the fp32 scores (last MSE "
                             f"{mse:.3g})")
        if name == "distilled":
            raise ValueError("PeakSim does not distil an arbitrary model (the student's "
                             "architecture is yours to choose): give your student with "
                             "--variant-factory distilled=module:function")
        raise ValueError("no such derived variant; derived variants are "
                         f"{', '.join(AUTO_VARIANTS)}; give others with --variant-factory "
                         f"{name}=module:function")

    probe = tuple(t.to(device) for t in sample_inputs(spec, 2, 0))
    for name in wanted:
        try:
            with quiet_quantization():
                m, how = build(name)
            m = _eval(m.to(device))
            with torch.inference_mode():
                scores_of(m(*probe))
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ValueError) else (
                f"building or running it failed: {_one_line(exc)}")
            out.skipped[name] = " ".join(reason.split())
            continue
        out.models[name] = m
        out.derived[name] = how
    return out


# ----------------------------------------------------------------------------------- quality


def quality(models: dict[str, nn.Module], spec: ModelSpec, samples: int, device: str = "cpu",
            chunk: int = 1024) -> dict[str, dict[str, float]]:
    """Scores of every variant on ``samples`` seeded items against fp32: max and mean absolute
    score difference; AUC and AUC delta when the spec gives labels (one score per item)."""
    from simulator.calibration.measure import auc

    scores: dict[str, list[np.ndarray]] = {v: [] for v in models}
    labels: list[np.ndarray] = []
    with torch.inference_mode():
        for i, start in enumerate(range(0, samples, chunk)):
            k = min(chunk, samples - start)
            seed = 777_000 + i
            x = tuple(t.to(device) for t in sample_inputs(spec, k, seed))
            for v, m in models.items():
                scores[v].append(scores_of(m(*x)).float().reshape(k, -1).cpu().numpy())
            if spec.labels is not None:
                labels.append(np.asarray(spec.labels(k, seed).float().reshape(-1).cpu()))
    s = {v: np.concatenate(p) for v, p in scores.items()}
    ref = s.get("fp32")
    if ref is None:
        raise ValueError("quality needs the fp32 variant as reference")
    y = np.concatenate(labels) if labels else None
    use_auc = y is not None and ref.shape[1] == 1 and 0 < y.sum() < len(y)
    base = auc(ref[:, 0], y) if use_auc else None
    out: dict[str, dict[str, float]] = {}
    for v, arr in s.items():
        d = np.abs(arr - ref)
        q = {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean())}
        if use_auc and base is not None:
            a = auc(arr[:, 0], y)
            q |= {"auc": round(a, 5), "auc_delta": round(a - base, 5)}
        out[v] = q
    return out


def _copy_stats(model: nn.Module, example: tuple[torch.Tensor, ...]) -> tuple[int, float, float]:
    """(bytes of parameters and buffers, deep copy + warm-up s, first call ms) for a module
    torch.save cannot pickle."""
    st = model_stats(model)
    t0 = time.perf_counter()
    m = _deepcopy(model)
    cuda = example[0].is_cuda
    with torch.inference_mode():
        t1 = time.perf_counter()
        m(*example)
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        for _ in range(3):
            m(*example)
        if cuda:
            torch.cuda.synchronize()
    return st["parameter_bytes"] + st["buffer_bytes"], time.perf_counter() - t0, (t2 - t1) * 1e3


def measure_own(spec_: Any, progress: Callable[[str, int, int], None] | None = None) -> Any:
    """Measure an own model in this process (``spec_`` is a measure.Spec with ``model_ref``):
    build the variants, time them at every batch size, size/load/first call, quality."""
    from simulator.calibration.measure import Measured, load_stats, time_cells

    torch.set_num_threads(spec_.threads)
    if progress:
        progress("loading the model and deriving its variants", 0, 1)
    mspec, ident = model_of(spec_)
    user = {n: load_user_variant(n, r)[0] for n, r in spec_.variant_refs.items()}
    mspec.module.to(spec_.device)
    vs = build_variants(mspec, spec_.variants, spec_.device, spec_.train_steps, user)
    if "fp32" not in vs.models:
        raise ModelSpecError(f"--model {ident.get('factory')}: the fp32 variant could not run: "
                             f"{vs.skipped.get('fp32', 'not requested')}")
    inputs = {b: tuple(t.to(spec_.device) for t in sample_inputs(mspec, b, 1000 + b))
              for b in spec_.batch_sizes}
    res = Measured(samples_ms=time_cells(vs.models, spec_, progress, inputs=inputs))
    example = tuple(t.to(spec_.device) for t in sample_inputs(mspec, 1, 5))
    for v, m in vs.models.items():
        try:
            nbytes, load_s, first_ms = load_stats(m, None, spec_.device, example=example)
        except Exception:  # not picklable (e.g. an exported program's GraphModule)
            nbytes, load_s, first_ms = _copy_stats(m, example)
        res.model_bytes[v] = nbytes
        res.load_time_s[v] = [load_s]
        res.first_call_ms[v] = [first_ms]
        if mspec.architecture is not None:
            res.config[v] = mspec.architecture(v, m)
    if spec_.quality:
        if progress:
            progress("quality against fp32 on the sampled inputs", 0, 1)
        res.quality = quality(vs.models, mspec, spec_.eval_samples, spec_.device)
    res.own = {"kind": "own", **ident, **model_stats(mspec.module), **mspec.info,
               "labels": mspec.labels is not None,
               "derived": vs.derived, "skipped": vs.skipped,
               **({"user_variants": dict(spec_.variant_refs)} if spec_.variant_refs else {})}
    return res



def model_of(spec_: Any) -> tuple[ModelSpec, dict[str, Any]]:
    """The model a measurement ``Spec`` names and its identity: ``spec_.model_ref`` (a factory
    or .pt2 file), else the built-in DLRM of ``spec_.model`` (a ``ModelConfig``) through its
    factory (:func:`simulator.calibration.model.dlrm_spec`): one path for every model."""
    if spec_.model_ref is not None:
        return load_model(spec_.model_ref)
    from simulator.calibration.model import dlrm_spec

    mspec = dlrm_spec(spec_.model)
    return mspec, {"factory": f"simulator.calibration.model:build_dlrm_{spec_.model.name}"}

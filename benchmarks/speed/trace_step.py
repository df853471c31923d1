"""What one training step does: calls into the package, dtype changes, no-op casts and host syncs (issue 33).

python benchmarks/speed/trace_step.py --out benchmarks/results/trace_step.json [--verbose]

For each model a *step* is what :func:`gpytorch_vae.training.fit` runs per batch, :func:`gpytorch_vae.training.fit_step`
(forward, loss, the loss and the logged values to the host, the backward pass, the optimizer step and fit's default
step hooks, e.g. GECO's multiplier update). A few warm-up steps run first
(the first steps take other branches, e.g. GECO's moving average starts), then one step is traced on CPU:

- **calls**: Python ``call`` events (``sys.setprofile``) of code whose file lies in the ``gpytorch_vae`` folder,
  with the distinct functions and files they belong to. A generator's resumption is a ``call`` event too, as
  Python reports it: ``resumptions`` says how many of the calls were (calls - resumptions = function entries).
  Dataclass-generated methods have no file in the package and do not count;
- **dtype changes**: torch calls seen by a :class:`torch.overrides.TorchFunctionMode` whose floating result has a
  floating dtype that none of its floating inputs has (for a cast: other than the tensor cast); ops that mix
  floating dtypes (an implicit promotion of one operand) are listed apart as *mixed*;
- **no-op casts**: ``to``/``type``/``type_as``/``double``/``float``/``half``/``bfloat16`` (and ``as_tensor``
  with a ``dtype``) whose result has the dtype of the tensor cast;
- **host syncs**: calls that copy a value to Python or need data-dependent shapes, which on CUDA wait for the
  device: ``item``, ``__bool__``, ``__float__``, ``__int__``, ``__index__``, ``__format__``, ``tolist``,
  ``numpy``, ``__array__``, ``cpu``, ``is_nonzero``, ``nonzero``, ``masked_select``, ``unique``, one-argument
  ``where``, boolean-mask indexing. Adam's step counters (``torch.optim`` ``_get_value``) are left out: on CUDA
  they stay on the CPU.

Every event carries the place of the innermost package frame (``file:line function``) and the line that called
torch. The table sets the numbers beside issue 33's targets for one SVGP-VAE + GECO step. ``trace_step`` (and
``trace_call`` for any function) is what ``tests/test_step_trace.py`` checks.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import inspect
import os
import pathlib
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "gpytorch_vae"

#: issue 33's targets for one SVGP-VAE + GECO step (calls: ab19055's count)
TARGETS = {"calls": 67, "dtype_changes": 3, "noop_casts": 0, "host_syncs": 2}

CASTS = {"to", "type", "type_as", "double", "float", "half", "bfloat16"}
SYNCS = {"item", "__bool__", "__float__", "__int__", "__index__", "__format__", "tolist", "numpy", "__array__", "cpu",
         "is_nonzero", "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive"}  # fmt: skip
INDEXING = {"__getitem__", "__setitem__"}
_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
_THIS_FILE = os.path.realpath(__file__)
#: torch's Python wrappers that pass a call on to the mode: not the line that called torch
_TORCH_WRAPPERS = {os.path.realpath(module.__file__) for module in (torch.overrides, torch._tensor, torch.functional,
                                                                     torch.nn.functional)}  # fmt: skip
_SITE = [os.path.realpath(p) for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}]


@dataclass
class Event:
    """One dtype change, no-op cast or host sync: the torch call, where in the package it happened (innermost
    package frame, ``None`` outside any) and the line that called torch."""

    op: str
    detail: str
    location: str | None
    site: str


@dataclass
class StepTrace:
    """The counts of one traced call. ``function_calls``: ``file:line qualname`` -> calls."""

    calls: int = 0
    resumptions: int = 0
    function_calls: dict[str, int] = field(default_factory=dict)
    dtype_changes: list[Event] = field(default_factory=list)
    mixed_dtypes: list[Event] = field(default_factory=list)
    noop_casts: list[Event] = field(default_factory=list)
    host_syncs: list[Event] = field(default_factory=list)
    excluded_syncs: list[Event] = field(default_factory=list)
    torch_calls: int = 0

    @property
    def functions(self) -> int:
        return len(self.function_calls)

    @property
    def files(self) -> int:
        return len({key.split(":", 1)[0] for key in self.function_calls})

    def counts(self) -> dict[str, int]:
        return {
            "calls": self.calls, "resumptions": self.resumptions, "functions": self.functions, "files": self.files,
            "dtype_changes": len(self.dtype_changes), "noop_casts": len(self.noop_casts),
            "host_syncs": len(self.host_syncs), "mixed_dtypes": len(self.mixed_dtypes),
            "excluded_syncs": len(self.excluded_syncs), "torch_calls": self.torch_calls,
        }  # fmt: skip

    def to_dict(self) -> dict:
        out = self.counts()
        out["function_calls"] = dict(self.function_calls)
        for key in ("dtype_changes", "mixed_dtypes", "noop_casts", "host_syncs", "excluded_syncs"):
            out[key + "_at"] = [asdict(event) for event in getattr(self, key)]
        return out


def _short(path: str, package: str) -> str:
    path = os.path.realpath(path)
    if path.startswith(package + os.sep):
        return os.path.relpath(path, os.path.dirname(package))
    for root in _SITE:
        if path.startswith(root + os.sep):
            return os.path.relpath(path, root)
    return path


class _Tracer(TorchFunctionMode):
    """The profiler (package calls) and the torch-function mode (dtypes, casts, syncs) of one traced call."""

    def __init__(self, package: str):
        super().__init__()
        self.package = os.path.realpath(package)
        self.trace = StepTrace()
        self._inside: dict[Any, bool] = {}
        self._counts: collections.Counter = collections.Counter()
        self._started: dict[int, Any] = {}  # generator frames seen (kept alive, so that no id is reused)

    # ---------------------------------------------------------------- package calls
    def _in_package(self, code) -> bool:
        inside = self._inside.get(code)
        if inside is None:
            inside = self._inside[code] = os.path.realpath(code.co_filename).startswith(self.package + os.sep)
        return inside

    def profile(self, frame, event, arg) -> None:
        if event == "call" and self._in_package(frame.f_code):
            self._counts[frame.f_code] += 1
            if frame.f_code.co_flags & _GENERATOR_FLAGS:
                if id(frame) in self._started:
                    self.trace.resumptions += 1
                else:
                    self._started[id(frame)] = frame

    def finish(self) -> StepTrace:
        calls = collections.Counter()
        for code, count in self._counts.items():
            name = getattr(code, "co_qualname", code.co_name)
            calls[f"{_short(code.co_filename, self.package)}:{code.co_firstlineno} {name}"] += count
        self.trace.function_calls = dict(sorted(calls.items(), key=lambda item: (-item[1], item[0])))
        self.trace.calls = sum(calls.values())
        self._started.clear()
        return self.trace

    # ---------------------------------------------------------------- torch calls
    def _where(self) -> tuple[str | None, str, str]:
        """(innermost package frame, the frame that called torch, that frame's function name)."""
        frame = sys._getframe(2)
        site, site_function, location = None, "", None
        while frame is not None:
            filename = os.path.realpath(frame.f_code.co_filename)
            if filename != _THIS_FILE and filename not in _TORCH_WRAPPERS:
                if site is None:
                    site = f"{_short(filename, self.package)}:{frame.f_lineno}"
                    site_function = frame.f_code.co_name
                if self._in_package(frame.f_code):
                    location = f"{_short(filename, self.package)}:{frame.f_lineno} {frame.f_code.co_name}"
                    break
            frame = frame.f_back
        return location, site or "?", site_function

    def _event(self, kind: str, name: str, detail: str) -> None:
        location, site, site_function = self._where()
        if kind == "host_syncs" and site_function == "_get_value" and "torch/optim" in site:
            kind = "excluded_syncs"  # Adam's step counter: a CPU tensor on CUDA too
        getattr(self.trace, kind).append(Event(name, detail, location, site))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self.trace.torch_calls += 1
        name = getattr(func, "__name__", str(func))
        if name == "__get__":  # attribute access (dtype, shape, grad, ...)
            return result
        self._inspect(name, args, kwargs, result)
        return result

    def _inspect(self, name: str, args, kwargs, result) -> None:
        first = args[0] if args else None
        if name in SYNCS or (name == "where" and len(args) + len(kwargs) == 1):
            shape = tuple(first.shape) if isinstance(first, torch.Tensor) else ""
            self._event("host_syncs", name, f"{_dtype(first)}{list(shape) if shape != '' else ''}")
        elif name in INDEXING and len(args) > 1 and _boolean_index(args[1]):
            self._event("host_syncs", name, "boolean-mask index")
        outputs = [t for t in tree_leaves(result) if isinstance(t, torch.Tensor) and t.dtype.is_floating_point]
        if not outputs:
            return
        out_dtypes = sorted({str(t.dtype) for t in outputs})
        requested = name in CASTS or (name in ("as_tensor", "asarray") and "dtype" in kwargs)
        if requested and isinstance(first, torch.Tensor):
            if name == "to" and not _to_sets_dtype(args[1:], kwargs):
                return  # a device move only
            if all(t.dtype == first.dtype for t in tree_leaves(result) if isinstance(t, torch.Tensor)):
                self._event("noop_casts", name, str(first.dtype))
            elif first.dtype.is_floating_point:
                self._event("dtype_changes", name, f"{first.dtype} -> {', '.join(out_dtypes)}")
            return
        inputs = {t.dtype for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        floating = sorted(str(d) for d in inputs if d.is_floating_point)
        if not floating:
            return
        new = [d for d in out_dtypes if d not in floating]
        if new:
            self._event("dtype_changes", name, f"{', '.join(floating)} -> {', '.join(out_dtypes)}")
        elif len(floating) > 1:
            self._event("mixed_dtypes", name, f"{', '.join(floating)} -> {', '.join(out_dtypes)}")


def _dtype(value) -> str:
    return str(value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__


def _boolean_index(index) -> bool:
    return any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in tree_leaves(index))


def _to_sets_dtype(args, kwargs) -> bool:
    """Whether ``Tensor.to(*args, **kwargs)`` names a dtype (a dtype or a tensor; not only a device)."""
    return "dtype" in kwargs or any(isinstance(a, (torch.dtype, torch.Tensor)) for a in args)


def trace_call(fn: Callable, *args, package: str | os.PathLike = PACKAGE_DIR, **kwargs) -> tuple[Any, StepTrace]:
    """Run ``fn(*args, **kwargs)`` once under the tracer: returns its result and the :class:`StepTrace` (calls into
    the Python files under ``package``, dtype changes, no-op casts and host syncs with their places)."""
    tracer = _Tracer(os.fspath(package))
    previous = sys.getprofile()
    with tracer:
        sys.setprofile(tracer.profile)
        try:
            result = fn(*args, **kwargs)
        finally:
            sys.setprofile(previous)
    return result, tracer.finish()


def trace_step(step: Callable, batch, *, warmup: int = 2, value_checks: bool = True,
               package: str | os.PathLike = PACKAGE_DIR) -> StepTrace:  # fmt: skip
    """``warmup`` calls of ``step(batch)`` (``fit``'s step: :func:`gpytorch_vae.training.fit_step`), then one traced
    call. ``value_checks=False``: under ``settings.debug(False)``, as a step on CUDA runs by default (the value
    checks are on for CPU tensors only)."""
    for _ in range(warmup):
        step(batch)
    with contextlib.ExitStack() as stack:
        if not value_checks:
            from gpytorch_vae.settings import debug

            stack.enter_context(debug(False))
        return trace_call(step, batch, package=package)[1]


# ---------------------------------------------------------------------- the models
def quickstart(objective: str = "elbo", num_inducing: int = 10, batch_size: int = 50, seed: int = 0):
    """The README's quickstart SVGP-VAE (GaussianLikelihood, float64 GP) with ``num_inducing`` inducing points, its
    objective (``"elbo"`` or ``"geco"``, N = 400), ``fit``'s step of it (Adam, lr 1e-2), and one batch of
    ``batch_size``."""
    import gpytorch

    from gpytorch_vae import GPVAE, SparseLatentPrior
    from gpytorch_vae.data import make_synthetic_gp_data
    from gpytorch_vae.gps import SparseLatentGP
    from gpytorch_vae.likelihoods import GaussianLikelihood
    from gpytorch_vae.nn import MaskedEncoder, MLPDecoder, MLPEncoder
    from gpytorch_vae.objectives import ELBO, GECOObjective
    from gpytorch_vae.training import fit_step

    torch.manual_seed(seed)
    data = make_synthetic_gp_data(num_points=400, seed=seed)
    mask = torch.rand(400, 16) > 0.3
    L = 2
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([L]))
    inducing = torch.linspace(0, 20, num_inducing).unsqueeze(-1)
    vae = GPVAE(
        MaskedEncoder(MLPEncoder(2 * 16, 64, L)),
        MLPDecoder(L, 64, 16),
        SparseLatentPrior(SparseLatentGP(inducing_points=inducing, covar_module=kernel)),
        latent_dim=L,
        likelihood=GaussianLikelihood(noise=0.01),
        gp_dtype=torch.float64,
    )
    objective_ = ELBO(vae, num_data=400) if objective == "elbo" else GECOObjective(vae, num_data=400)
    batch = (data.x[:batch_size], data.y[:batch_size], mask[:batch_size])
    return objective_, fit_step(objective_, lr=1e-2), batch


def rotated_mnist(batch_size: int | None = None, seed: int = 0):
    """The rotated-MNIST SVGP-VAE with GECO of ``examples/experiments/rotated_mnist.py`` (m = 32, the protocol's
    batch of 256; the shipped source digits, no download), ``fit``'s step of it (Adam, lr 1e-3), and its first
    batch."""
    import math

    import pyro

    examples = str(ROOT / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    from experiments.rotated_mnist import MODELS, build_model, model_splits

    from gpytorch_vae.data import load_rotated_mnist
    from gpytorch_vae.training import fit_step

    data = load_rotated_mnist()
    train, _, _ = model_splits("svgpvae", data)
    x, y = train.tensors()
    size = batch_size or MODELS["svgpvae"].batch_size
    pyro.set_rng_seed(seed)
    model = build_model("svgpvae", data, train, seed)
    objective = MODELS["svgpvae"].objective(model, len(x), None, math.inf)
    return objective, fit_step(objective, lr=1e-3), (x[:size], y[:size])


MODELS = {
    "quickstart": ("README quickstart SVGP-VAE, ELBO (m = 10, b = 50)", lambda: quickstart("elbo")),
    "quickstart-geco": ("README quickstart SVGP-VAE, GECO (m = 10, b = 50)", lambda: quickstart("geco")),
    "rotated-mnist": ("rotated-MNIST SVGP-VAE, GECO (m = 32, b = 256)", rotated_mnist),
}
COLUMNS = ("calls", "functions", "files", "dtype_changes", "noop_casts", "host_syncs")


def table(results: dict[str, StepTrace]) -> str:
    names = list(results)
    lines = ["| | " + " | ".join(names) + " | target (GECO step) |", "|---|" + "---|" * (len(names) + 1)]
    for column in COLUMNS + ("resumptions", "mixed_dtypes", "excluded_syncs"):
        cells = [str(results[name].counts()[column]) for name in names]
        target = TARGETS.get(column)
        lines.append(f"| {column} | " + " | ".join(cells) + f" | {'-' if target is None else f'<= {target}'} |")
    return "\n".join(lines)


def details(name: str, trace: StepTrace) -> str:
    lines = [f"\n## {name}"]
    for kind in ("dtype_changes", "mixed_dtypes", "noop_casts", "host_syncs", "excluded_syncs"):
        events = getattr(trace, kind)
        lines.append(f"{kind} ({len(events)}):")
        lines += [f"  {e.op:<14} {e.detail:<34} at {e.location or '(outside the package)'}  [{e.site}]" for e in events]
    lines.append(f"calls ({trace.calls}, {trace.resumptions} of them generator resumptions, in {trace.functions} "
                 f"functions, {trace.files} files):")
    lines += [f"  {count:>3}  {key}" for key, count in trace.function_calls.items()]
    return "\n".join(lines)


MARKDOWN_ROWS = (("calls into the package", "calls"), ("functions", "functions"), ("files", "files"),
                 ("dtype changes", "dtype_changes"), ("no-op casts", "noop_casts"))  # fmt: skip


def markdown(models=("quickstart", "quickstart-geco", "rotated-mnist"), warmup: int = 2) -> str:
    """The table of docs/architecture.md: each model's step traced with the value checks off (the default on
    accelerators, where the targets are counted) and on (the default for CPU tensors), beside issue 33's targets."""
    off, on = {}, {}
    for name in models:
        _, step_of, batch = MODELS[name][1]()
        off[name] = trace_step(step_of, batch, warmup=warmup, value_checks=False).counts()
        on[name] = trace_step(step_of, batch, warmup=0).counts()
    lines = ["| one training step (`fit_step`) | " + " | ".join(f"`{name}`" for name in models) + " | target |",
             "|---|" + "---|" * (len(models) + 1)]  # fmt: skip
    rows = [(label, off, key) for label, key in MARKDOWN_ROWS]
    rows += [("host syncs, `settings.debug(False)`", off, "host_syncs"), ("host syncs, debug on (CPU default)", on,
             "host_syncs"), ("mixed-dtype ops", off, "mixed_dtypes")]  # fmt: skip
    for label, counts, key in rows:
        target = TARGETS.get(key) if counts is off else None
        cells = " | ".join(str(counts[name][key]) for name in models)
        lines.append(f"| {label} | {cells} | {'-' if target is None else f'<= {target}'} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--warmup", type=int, default=2, help="untraced steps first (default 2)")
    parser.add_argument("--no-value-checks", action="store_true",
                        help="trace under settings.debug(False), the default of a step on CUDA")
    parser.add_argument("--verbose", action="store_true", help="list every event's place and every function")
    parser.add_argument("--out", help="write the numbers as JSON to this file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true",
                        help="print the table of docs/architecture.md (value checks off and on) and nothing else")
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    if options.markdown:
        print(markdown(tuple(options.models), options.warmup))
        return {}

    results = {}
    for name in options.models:
        _, step_of, batch = MODELS[name][1]()
        results[name] = trace_step(step_of, batch, warmup=options.warmup, value_checks=not options.no_value_checks)
    step = "fit_step" + (", value checks off (settings.debug(False))" if options.no_value_checks else "")
    print(f"One step ({step}) traced on CPU after {options.warmup} warm-up steps; targets: issue 33")
    print(table(results))
    for name, trace in results.items():
        print(details(MODELS[name][0], trace) if options.verbose else
              f"{name}: {trace.counts()}")  # fmt: skip
    payload = {
        "step": step, "warmup": options.warmup, "targets": TARGETS, "torch": torch.__version__,
        "python": sys.version.split()[0], "models": {name: {"description": MODELS[name][0], **trace.to_dict()}
                                                     for name, trace in results.items()},
    }  # fmt: skip
    if options.out:
        from gpytorch_vae.io import write_json

        write_json(options.out, payload)
        print(f"wrote {options.out}")
    return payload


if __name__ == "__main__":
    main()

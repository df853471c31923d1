"""The library's own message for a prior covariance that cannot be factorised, naming the likely cause."""

from __future__ import annotations

import functools
import math
import os

import gpytorch
import torch
from torch import Tensor

from .. import settings


def suspicious_hyperparameters(model: torch.nn.Module) -> list[str]:
    """``name = value`` of the GPyTorch hyperparameters of ``model`` (through their constraints) that are not finite,
    zero or negative (e.g. a lengthscale of 0, a NaN or negative outputscale)."""
    found = []
    for prefix, module in _gpytorch_modules(model):
        for name, parameter, constraint in module.named_parameters_and_constraints():
            if constraint is None:  # e.g. inducing points: inputs, not hyperparameters
                continue
            value = constraint.transform(parameter).detach()
            if not bool((torch.isfinite(value) & (value > 0)).all()):
                found.append(f"{prefix}{name.replace('raw_', '')} = {value.flatten()[:4].tolist()}")
    return found


def _gpytorch_modules(module: torch.nn.Module, prefix: str = ""):
    """The outermost GPyTorch modules of ``module`` (each covers its own submodules), with their name prefixes."""
    if isinstance(module, gpytorch.Module):
        yield prefix, module
        return
    for name, child in module.named_children():
        yield from _gpytorch_modules(child, f"{prefix}{name}.")


def check_prior_covariance(covariance: Tensor, model: torch.nn.Module, inputs: Tensor, what: str) -> None:
    """Raise a :class:`ValueError` naming the likely cause when the prior ``covariance`` of ``inputs`` (e.g.
    :math:`\\mathbf K_{mm}` of the inducing points) holds NaN or inf: non-finite inputs, or kernel hyperparameters
    that are not finite or zero. Checked under :class:`gpytorch_vae.settings.debug`."""
    if not settings.debug.on(covariance) or bool(torch.isfinite(covariance).all()):
        return
    raise ValueError(f"the prior covariance of the {what} holds NaN or inf: {likely_cause(model, inputs, what)}")


def likely_cause(model: torch.nn.Module, inputs: Tensor, what: str) -> str:
    causes = []
    if not bool(torch.isfinite(inputs).all()):
        causes.append(f"the {what} hold NaN or inf values")
    hyperparameters = suspicious_hyperparameters(model)
    if hyperparameters:
        causes.append("kernel hyperparameters are not finite, zero or negative: " + ", ".join(hyperparameters))
    if not causes:
        causes.append("the kernel gives NaN for these inputs (check its parameters and the inputs' scale)")
    return "; ".join(causes)


def not_positive_definite(model: torch.nn.Module, inputs: Tensor, what: str, jitter: float,
                          jitter_setting: str = "jitter_val") -> str:  # fmt: skip
    """The message for a covariance that stays indefinite with jitter (``jitter_setting``: where the jitter is
    set)."""
    close = ""
    if inputs.dim() >= 2 and inputs.size(-2) > 1 and bool(torch.isfinite(inputs).all()):
        distance = torch.cdist(inputs.reshape(-1, *inputs.shape[-2:]).double(),
                               inputs.reshape(-1, *inputs.shape[-2:]).double())  # fmt: skip
        distance = distance.masked_fill(torch.eye(inputs.size(-2), dtype=torch.bool), math.inf)  # not to itself
        close = f"; the closest two {what} are {distance.min().item():.3g} apart (duplicates make it singular)"
    hyperparameters = suspicious_hyperparameters(model)
    bad = "; kernel hyperparameters: " + ", ".join(hyperparameters) if hyperparameters else ""
    return (f"the prior covariance of the {what} is not positive definite even with jitter {jitter:g}" + close + bad
            + f": check the kernel (e.g. a negative variance), or raise the jitter ({jitter_setting})")  # fmt: skip


@functools.lru_cache(maxsize=None)
def physical_memory() -> int | None:
    """This machine's physical memory in bytes (``None`` where the system does not say), asked once per process."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(model: torch.nn.Module, batch_shape: torch.Size, num_inducing: int, num_points: int,
                 dtype: torch.dtype) -> None:  # fmt: skip
    """Refuse, before allocating, prior terms that cannot fit in this machine's memory: a step holds a few
    ``(*batch, m, m + n)`` matrices per GP (the kernel rows, their factors and their gradients); the estimate counts
    four of them."""
    covar = getattr(model, "covar_module", None)
    gps = torch.Size(batch_shape).numel() * max(1, torch.Size(getattr(covar, "batch_shape", ())).numel())
    needed = 4 * gps * num_inducing * (num_inducing + num_points) * torch.finfo(dtype).bits // 8
    available = physical_memory()
    if available is not None and needed > available:
        raise MemoryError(
            f"m = {num_inducing} inducing points for {gps} GPs and {num_points} points need about "
            f"{needed / 2**30:.0f} GiB, more than this machine's {available / 2**30:.0f} GiB: use fewer inducing points"
        )

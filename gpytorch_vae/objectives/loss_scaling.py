"""Adam with a loss divided by a changing power of two, with the updates of the unscaled loss."""

from __future__ import annotations

import math

import torch

_MOMENTS = {"exp_avg": 1, "exp_avg_sq": 2, "max_exp_avg_sq": 2}  # Adam state entry -> power of the gradient scale
EPS_FLOOR = 1e-30  # a normal number in float32 and float64


class ScaledLossOptimizer:
    r"""Steps a :class:`torch.optim.Adam` (or :class:`~torch.optim.AdamW`) on a loss that was divided by
    :math:`s = 2^e`, where :math:`e` changes during training (e.g. :attr:`GECO.loss_exponent
    <gpytorch_vae.objectives.GECO.loss_exponent>`, which follows :math:`\log_2\lambda`), such that the parameter
    updates are those of the unscaled loss.

    Adam's update :math:`\hat{\mathbf m}/(\sqrt{\hat{\mathbf v}} + \epsilon)` is unchanged when every gradient,
    :math:`\mathbf m` and :math:`\sqrt{\mathbf v}` are divided by :math:`s` and :math:`\epsilon` by :math:`s` too.
    So when :math:`e` changes by :math:`d` (:math:`k = 2^d`), :meth:`step` first divides the first moments by
    :math:`k`, the second moments by :math:`k^2`, and sets :math:`\epsilon_s = \epsilon/s` (floored at
    ``1e-30``, which only matters for :math:`s > 10^{22}`, where :math:`\epsilon` is negligible either way). Powers
    of two make every rescaling exact in floating point. Unlike :class:`torch.amp.GradScaler`, which scales the loss
    *up* against underflow and unscales the gradients, this keeps gradients and moments *scaled down* for good: the
    unscaled ones are what overflows. Written by hand because neither PyTorch nor Pyro offers it.

    :param optimizer: an Adam-type optimizer (its state holds ``exp_avg`` and ``exp_avg_sq``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            raise TypeError(f"ScaledLossOptimizer needs torch.optim.Adam or AdamW, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.exponent = 0
        self.base_eps = [group["eps"] for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def rescale(self, exponent: int) -> None:
        """Bring the optimizer's state to the scale :math:`2^{-e}` of the gradients (``exponent`` = :math:`e`)."""
        exponent = int(exponent)
        if exponent == self.exponent:
            return
        # exact powers of two; a jump beyond float range (only after a diverged step) saturates instead of raising
        shift = exponent - self.exponent
        for state in self.optimizer.state.values():
            for key, power in _MOMENTS.items():
                if key in state:
                    factor = math.ldexp(1.0, max(-1100, min(1000, -shift * power)))
                    state[key].mul_(min(factor, torch.finfo(state[key].dtype).max))
        for group, eps in zip(self.optimizer.param_groups, self.base_eps):
            group["eps"] = max(math.ldexp(eps, -min(exponent, 1000)), EPS_FLOOR) if eps > 0 else eps
        self.exponent = exponent

    def step(self, exponent: int) -> None:
        """Rescale the state to :math:`e` = ``exponent`` (the scale of the gradients just computed), then step."""
        self.rescale(exponent)
        self.optimizer.step()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "exponent": self.exponent, "base_eps": self.base_eps}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.exponent = int(state["exponent"])
        self.base_eps = list(state["base_eps"])

"""Evaluation metrics."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def affine_align(predicted: Tensor, true: Tensor) -> Tensor:
    r"""``predicted`` mapped by the least-squares affine map :math:`[\hat{\mathbf z}, 1]\mathbf W \approx \mathbf z`,
    one map fitted over all points (inputs ``(..., L)``; :math:`\mathbf W` is :math:`(L+1)\times L`). Latent spaces
    are identified only up to such maps (Pearce 2020's path metric)."""
    pred = predicted.reshape(-1, predicted.size(-1)).double()
    target = true.reshape(-1, true.size(-1)).double()
    design = torch.cat([pred, torch.ones_like(pred[:, :1])], dim=-1)
    weights = torch.linalg.lstsq(design, target).solution
    return (design @ weights).reshape(true.shape).to(true.dtype)


def affine_aligned_rmse(predicted: Tensor, true: Tensor) -> float:
    """RMSE between :func:`affine_align` ``(predicted, true)`` and ``true``, over all coordinates."""
    return (affine_align(predicted, true).double() - true.double()).square().mean().sqrt().item()


def _numpy(values) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    return values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)


def _selected(probs, target, where) -> tuple[np.ndarray, np.ndarray]:
    """The entries of ``probs`` and ``target`` where ``where`` is True (all three of one shape), as float64; an error
    if none is."""
    probs, target, where = _numpy(probs), _numpy(target), _numpy(where)
    if not probs.shape == target.shape == where.shape:
        raise ValueError(f"probs, target and where must have one shape, got {probs.shape}, {target.shape}, "
                         f"{where.shape}")  # fmt: skip
    where = where.astype(bool, copy=False)
    if not where.any():
        raise ValueError("no entry is selected (where is all False): nothing to evaluate")
    return probs[where].astype(np.float64), target[where].astype(np.float64)


def masked_mse(probs, target, where) -> float:
    """Mean of :math:`(p - x)^2` over the entries where ``where`` is True (e.g. the missing pixels of an imputation
    benchmark). Tensors or arrays of one shape; computed in float64.

    :param probs: the predictions :math:`p` (e.g. imputed pixel probabilities).
    :param target: the true values :math:`x`.
    :param where: bool, the entries to average over.
    """
    p, x = _selected(probs, target, where)
    return float(np.mean((p - x) ** 2))


def masked_bernoulli_nll(probs, target, where, eps: float = 1e-6) -> float:
    r"""Mean Bernoulli negative log-likelihood :math:`-x \log p - (1 - x) \log(1 - p)` over the entries where
    ``where`` is True, with :math:`p` clipped to ``[eps, 1 - eps]``. Tensors or arrays of one shape; float64.

    :param probs: the predicted probabilities :math:`p`.
    :param target: the true binary values :math:`x`.
    :param where: bool, the entries to average over.
    :param eps: the clipping of :math:`p`.
    """
    p, x = _selected(probs, target, where)
    p = np.clip(p, eps, 1.0 - eps)
    return float(np.mean(-x * np.log(p) - (1.0 - x) * np.log1p(-p)))


def downstream_auroc(features, labels, max_iter: int = 1000) -> float:
    """The downstream value of an imputation: flatten each sample of ``features`` ``(n, ...)`` (e.g. the imputed
    test sequences, observed pixels kept), fit scikit-learn's ``LogisticRegression`` (lbfgs, ``max_iter``) on the
    first ``n // 2`` samples' labels and return the macro one-vs-rest ROC AUC of its probabilities on the others.

    :param features: ``(n, ...)`` tensor or array.
    :param labels: ``(n,)`` integer class labels.
    :param max_iter: the solver's iteration limit.
    """
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
    except ImportError as error:  # scikit-learn is an optional dependency of the library
        raise ImportError("downstream_auroc needs scikit-learn: pip install scikit-learn") from error
    features = _numpy(features)
    features = features.reshape(len(features), -1).astype(np.float64, copy=False)
    labels = _numpy(labels)
    if labels.shape != (len(features),):
        raise ValueError(f"labels must have shape ({len(features)},), got {labels.shape}")
    half = len(features) // 2
    fitted, scored = set(labels[:half].tolist()), set(labels[half:].tolist())
    if fitted != scored:
        raise ValueError(f"the classes {sorted(fitted ^ scored)} occur in only one half of the samples (the first half "
                         f"fits the classifier, the second is scored): use more (or shuffled) samples")  # fmt: skip
    classifier = LogisticRegression(solver="lbfgs", max_iter=max_iter).fit(features[:half], labels[:half])
    scores = classifier.predict_proba(features[half:])
    if len(classifier.classes_) == 2:
        return float(roc_auc_score(labels[half:], scores[:, 1]))
    return float(roc_auc_score(labels[half:], scores, multi_class="ovr", average="macro", labels=classifier.classes_))

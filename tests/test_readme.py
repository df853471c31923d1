"""The README's Python snippets run, in order, in one namespace (the Pyro snippet trains the quickstart's model),
and give what the text around them claims."""

import pathlib
import re

import numpy as np
import torch

README = pathlib.Path(__file__).parents[1] / "README.md"


def test_readme_snippets_run_and_give_what_they_claim():
    snippets = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(snippets) == 4
    imputer, quickstart, strategy, pyro_svi = snippets
    rng = np.random.default_rng(0)  # a user's array: 4 sequences of 30 steps, 3 features, 30 % NaN
    X = np.sin(np.arange(30) / 4)[None, :, None] + rng.normal(0, 0.1, (4, 30, 3))
    X[rng.random(X.shape) < 0.3] = np.nan
    namespace: dict = {"X": X}
    exec(compile(imputer, "README.md (imputer)", "exec"), namespace)
    filled, lower, upper = namespace["filled"], namespace["lower"], namespace["upper"]
    assert filled.shape == lower.shape == X.shape and np.isfinite(filled).all()
    assert (lower <= filled).all() and (filled <= upper).all() and (lower < upper)[np.isnan(X)].all()
    namespace = {}
    exec(compile(quickstart, "README.md (quickstart)", "exec"), namespace)
    # the text: missing entries' MSE 0.003 against 0.31 for the observed mean (margins: 10x and 3x)
    data, mask = namespace["data"], namespace["mask"]
    mean_fill = (data.y[mask].mean() - data.y[~mask]).square().mean()
    assert namespace["error"] < 0.03 < 0.1 * mean_fill
    imputed = namespace["imputed"]
    assert imputed.samples.shape == (20, 400, 16) and imputed.variance.shape == (400, 16)
    assert torch.equal(imputed.mean[mask], data.y[mask]) and (imputed.variance[~mask] > 0).all()

    exec(compile(strategy, "README.md (strategy)", "exec"), namespace)
    assert namespace["kl"].shape == torch.Size([16])
    assert namespace["bound"].shape == torch.Size([16])
    assert namespace["q_u"].mean.shape == torch.Size([16, 32])
    assert namespace["q_f"].mean.shape == torch.Size([16, 5])

    before = [p.detach().clone() for p in namespace["vae"].parameters()]
    exec(compile(pyro_svi, "README.md (Pyro)", "exec"), namespace)
    after = list(namespace["vae"].parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(b, a) for b, a in zip(before, after))  # SVI trained the quickstart's model

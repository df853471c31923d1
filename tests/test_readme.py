"""The README's Python snippet runs and gives the shapes it claims."""

import pathlib
import re

import torch


def test_readme_snippet_runs():
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["kl"].shape == torch.Size([16])
    assert namespace["bound"].shape == torch.Size([16])
    assert namespace["q_u"].mean.shape == torch.Size([16, 32])
    assert namespace["q_f"].mean.shape == torch.Size([16, 5])

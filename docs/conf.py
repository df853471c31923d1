"""Sphinx configuration of the gpytorch-vae documentation (``bash docs/build.sh``)."""

import sys
from pathlib import Path

import gpytorch_vae

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "gpytorch-vae"
author = "the gpytorch-vae developers"
copyright = "the gpytorch-vae developers"
version = release = gpytorch_vae.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "public_api",  # docs/_ext/public_api.py: the reference page of each public module
    "tutorials",  # docs/_ext/tutorials.py: runs docs/tutorials/*.py and renders them with their output
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: anchors for links such as ``page.md#a-heading`` (headings down to ###)
myst_heading_anchors = 3

# autodoc: the installed package is imported as it is, nothing mocked
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # only this library's docstrings, not those of torch / GPyTorch / Pyro
autodoc_typehints = "signature"
autosummary_generate = False  # the tables link to the pages written by the public-api directive

# the modules that get a reference page (docs/api/*.rst); each public object is documented at one of them
public_api_modules = [
    "gpytorch_vae",
    "gpytorch_vae.variational",
    "gpytorch_vae.gps",
    "gpytorch_vae.kernels",
    "gpytorch_vae.priors",
    "gpytorch_vae.likelihoods",
    "gpytorch_vae.models",
    "gpytorch_vae.imputer",
    "gpytorch_vae.objectives",
    "gpytorch_vae.nn",
    "gpytorch_vae.baselines",
    "gpytorch_vae.data",
    "gpytorch_vae.training",
    "gpytorch_vae.distributed",
    "gpytorch_vae.io",
    "gpytorch_vae.metrics",
    "gpytorch_vae.settings",
    "gpytorch_vae.test",
]

tutorials_timeout = 600  # seconds per tutorial script

html_theme = "alabaster"
html_title = f"gpytorch-vae {release}"
html_theme_options = {
    "description": "Gaussian-process priors over VAE latent codes, on GPyTorch and Pyro",
    "fixed_sidebar": True,
    "page_width": "1320px",
    "body_max_width": "none",
    "sidebar_width": "260px",
}
html_static_path = ["_static"]  # custom.css, which alabaster loads
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}

#!/usr/bin/env bash
# Builds the documentation site as CI does: from scratch (an incremental build would not repeat the warnings of
# pages it does not re-read), every warning an error (the build goes on to report them all, then fails). The
# tutorials of docs/tutorials/ run once each, in a temporary folder (about a minute on 2 CPU cores);
# GPYTORCH_VAE_DOCS_SKIP_TUTORIALS=1 skips them for quick iterations on the rest. Output: docs/_build/html.
# Needs the package and the docs extra: pip install -e ".[docs]"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
rm -rf docs/_build/html
python -m sphinx -W --keep-going -b html docs docs/_build/html "$@"

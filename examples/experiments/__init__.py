"""The papers' experiments: model set-ups, training regimes, evaluation and result files, shared by the scripts in
``examples/`` and ``benchmarks/`` (not part of the installed library)."""

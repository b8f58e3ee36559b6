"""first_eval — the analysis layer of the FIRST toolkit.

Datasets, the multiple-choice scorer, the predictions table, calibration metrics,
the concentrated-knowledge study, reports and the ``first-eval`` command line.

Importing this package (and running ``first-eval metrics``) never imports torch or
transformers; modules that need them import them lazily.
"""

__version__ = "0.1.0"

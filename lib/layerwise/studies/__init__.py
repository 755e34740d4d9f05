"""One module per study notebook: that study's design (arms, budgets, seeds) and its tables.

``baselines`` (01), ``layer_convergence`` (02), ``discriminative_rates`` (03), ``layer_types``
(04), ``layerwise_decay`` (05), ``lars`` (06), ``lamb`` (07), ``width_rules`` (09).  A study
imports the harness and the toolkit (``baselines`` and ``layerwise_decay`` also read the
budgets of ``discriminative_rates``, whose runs they share); neither imports a study.
"""

"""One module per study notebook: that study's design (arms, budgets, seeds) and its tables.

``baselines`` (01), ``layer_convergence`` (02), ``discriminative_rates`` (03), ``layer_types``
(04).  A study imports the harness and the toolkit; nothing imports a study.
"""

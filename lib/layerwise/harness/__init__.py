"""The study harness: what runs the project's studies, not what a practitioner imports.

``config`` (``RunConfig``), ``data`` (in-memory datasets), ``models`` (the testbeds' networks),
``train`` (one run -> one record), ``store`` (the run store), ``sweep`` (parallel runs),
``tuning`` (protocol v2), ``stats`` (intervals and the four outcomes), ``testbeds``,
``comparisons`` (arms and effect tables shared by studies), ``batch_scaling`` (budgets, grids
and paired families across batch sizes), ``plots`` / ``layer_plots``,
``study`` (a notebook's context) and ``runner`` (papermill over every notebook).

The harness imports the toolkit (``layerwise.layers``, ``rules``, ``groups``, ...), never a study.
"""

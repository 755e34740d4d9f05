import nbformat as nbf

nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# 01 · Baselines: are the testbeds right?

Before any layer-wise comparison, every testbed the studies use must train as well as the
published reference with **one learning rate for all layers** (AdamW). If a baseline is weak,
a per-layer rule could "win" by repairing a bad setup rather than by helping a good one.

**Claim under test** (`literature.md` §13): MNIST-1D MLP / CNN / GRU reach 68% / 94% / 91% test
accuracy (Greydanus 2020); Fashion-MNIST MLPs about 0.87–0.88 and small CNNs 0.92–0.93
(Xiao et al. 2017, README table); nanoGPT's CPU character transformer reaches a validation loss
of 1.88 nats on tiny-shakespeare (Karpathy, nanoGPT README). A baseline passes when ours is no
worse than the published number by more than the tolerance (2 accuracy points, 0.05 nats).

**Protocol** (design.md): each testbed gets its own log-spaced learning-rate grid (extended while
the best rate sits on an edge), chosen on the validation split with one seed, then rerun on three
fresh seeds; the test metric is reported as mean with a 95% Student-t interval. A small
transformer on MNIST-1D has no published number and is reported for later studies."""),
    code("""profile = "full"  # "full": the study; "smoke": seconds, into a temporary store
jobs = None  # worker processes (None: one per core)""", metadata={"tags": ["parameters"]}),
    code("""import matplotlib.pyplot as plt
import pandas as pd

import layerwise as lw
from layerwise import plots, testbeds, tuning, verdicts
from layerwise.notebook import start

study = start("01_baselines", profile)
beds = {name: testbeds.testbed(name, profile) for name in testbeds.TESTBEDS}
if study.smoke:
    grid, extra = tuning.log_grid(1e-3, 1e-2, 3), dict(final_seeds=(1, 2), max_extensions=0)
else:
    grid, extra = tuning.log_grid(3e-4, 3e-2, 5), dict(final_seeds=(1, 2, 3), max_extensions=2)
print(f"layerwise {lw.__version__}; profile {profile}; store {study.store.root}")
print("learning-rate grid:", grid)"""),
    md("""## Tuning every testbed
Accuracy testbeds are tuned on validation accuracy, the language model on validation loss.
Runs already in the store are read, not retrained."""),
    code("""results = {}
for metric in ("acc", "loss"):
    arms = {name: bed.config for name, bed in beds.items() if bed.metric == metric}
    results[metric] = tuning.tune(
        arms, grid, study.name, metric=metric, store=study.store, jobs=jobs, **extra
    )
summary = pd.concat([r.summary for r in results.values()], ignore_index=True)"""),
    md("""## Learning-rate sensitivity
Validation metric of every grid point (one seed). The star marks the chosen rate; red crosses
are runs that diverged (counted as failures). A chosen rate on the edge of its grid would mean
the testbed was not tuned."""),
    code("""best = dict(zip(summary["arm"], summary["best_lr"]))
fig = plots.lr_sensitivity(results["acc"].sensitivity, "val_acc", best)
study.savefig(fig, "lr_sensitivity_accuracy")
plt.show()
fig = plots.lr_sensitivity(results["loss"].sensitivity, "val_loss", best)
study.savefig(fig, "lr_sensitivity_loss")
plt.show()"""),
    md("""## Learning curves at the chosen rate
Validation metric during training, mean over the fresh seeds with a 95% band. (The language
model's curve uses 256 evenly spaced validation windows; its final number uses all of them.)"""),
    code("""curves = study.store.curves(study.name)
for metric, y in (("acc", "val_acc"), ("loss", "val_loss")):
    final = results[metric].final[["key", "arm"]]
    fig = plots.learning_curves(curves.merge(final, on="key"), y)
    study.savefig(fig, f"learning_curves_{metric}")
    plt.show()"""),
    md("""## Verdict
Computed from the store: test metric at the chosen rate over fresh seeds, against the published
number and its tolerance."""),
    code("""# NBVAL_CHECK_OUTPUT
table = verdicts.baseline_table(summary, beds)
print(table.to_string(index=False))"""),
    code("""runs = study.store.frame(study.name)
print(f"runs in the store for this study: {len(runs)}; "
      f"training compute they hold: {runs['wall_time_s'].sum() / 60:.1f} core-minutes")
print(f"this execution took {study.elapsed_s() / 60:.1f} min of wall time")"""),
    md("""## What this means for the question
The verdict table above is the answer for this notebook: a testbed marked *reproduced* is a
fair place to compare per-layer learning rates in the later studies; one marked *not
reproduced* or *not tuned* is flagged wherever a later study uses it."""),
]
nb.cells = cells
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
nbf.write(nb, "notebooks/01_baselines.ipynb")

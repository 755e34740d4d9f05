"""Per-layer diagnostics: training statistics, representation similarity, weight movement and
re-initialisation robustness.  One definition per quantity; see each module's docstring for the
formula and the paper it comes from.  ``ConvergenceTracker`` records them inside a training run.
"""

from .activations import capture_activations, parameter_owners, record_outputs
from .cka import ConstantRepresentationWarning, cka_to_final, convergence_step, linear_cka
from .monitor import QUANTITIES, Monitor, monitor_frame
from .movement import distance_to_final, layer_rotation, relative_movement
from .reinit import reinit_robustness
from .tracker import (
    ConvergenceTracker,
    bottom_up,
    bottom_up_runs,
    convergence_frames,
    convergence_times,
)

__all__ = [
    "QUANTITIES",
    "ConstantRepresentationWarning",
    "ConvergenceTracker",
    "Monitor",
    "bottom_up",
    "bottom_up_runs",
    "capture_activations",
    "cka_to_final",
    "convergence_frames",
    "convergence_step",
    "convergence_times",
    "distance_to_final",
    "layer_rotation",
    "linear_cka",
    "monitor_frame",
    "parameter_owners",
    "record_outputs",
    "reinit_robustness",
    "relative_movement",
]

"""Per-layer diagnostics: training statistics, representation similarity, weight movement and
re-initialisation robustness.  One definition per quantity; see each module's docstring for the
formula and the paper it comes from.  ``ConvergenceTracker`` records them inside a training run.
"""

from .activations import capture_activations, parameter_owners, record_outputs
from .cka import ConstantRepresentationWarning, cka_to_final, linear_cka, normalise_to_start
from .monitor import QUANTITIES, Monitor, monitor_frame
from .movement import distance_to_final, layer_rotation, relative_movement
from .reinit import reinit_robustness
from .tracker import ConvergenceTracker, convergence_frames, log_checkpoints, settling_times

__all__ = [
    "QUANTITIES",
    "ConstantRepresentationWarning",
    "ConvergenceTracker",
    "Monitor",
    "capture_activations",
    "cka_to_final",
    "convergence_frames",
    "distance_to_final",
    "layer_rotation",
    "linear_cka",
    "log_checkpoints",
    "monitor_frame",
    "normalise_to_start",
    "parameter_owners",
    "record_outputs",
    "reinit_robustness",
    "relative_movement",
    "settling_times",
]

"""The foundation shared by ``mbrl`` and ``safe_density``: input validation, the action box, seeding and
pickle-free atomic serialisation.

It imports nothing else from ``mbrl`` (``tests/mbrl/test_common.py`` checks), so it is neutral ground: the
planner and the three methods both stand on it, and neither drags the other in through it.
"""

from mbrl.common.action_box import ActionBox, check_bounds
from mbrl.common.seeding import check_seed, make_generator, seed_everything
from mbrl.common.serialization import load_state, save_state
from mbrl.common.validation import as_tensor, check_finite, check_int, check_shape, check_threshold

__all__ = [
    "ActionBox",
    "as_tensor",
    "check_finite",
    "check_bounds",
    "check_int",
    "check_seed",
    "check_shape",
    "check_threshold",
    "load_state",
    "make_generator",
    "save_state",
    "seed_everything",
]

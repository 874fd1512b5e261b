"""Small shared helpers: input validation, seeding and pickle-free atomic serialisation."""

from mbrl.util.seeding import check_seed, make_generator, seed_everything
from mbrl.util.serialization import load_state, save_state
from mbrl.util.validation import as_tensor, check_finite, check_int, check_shape, check_threshold

__all__ = [
    "as_tensor",
    "check_finite",
    "check_int",
    "check_seed",
    "check_shape",
    "check_threshold",
    "load_state",
    "make_generator",
    "save_state",
    "seed_everything",
]

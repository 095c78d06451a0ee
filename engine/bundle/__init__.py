"""The HDF5 bundle (temporary single module while the room is split)."""
from engine.bundle._all import *  # noqa: F401,F403
from engine.bundle._all import expected_model_shapes, SAE_KEYS  # noqa: F401

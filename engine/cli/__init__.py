"""The headless ``superpos`` command line."""
from engine.cli.main import main  # noqa: F401

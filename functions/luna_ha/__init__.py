"""Luna HSM HA groups as code."""

# The version the function reports in every log line (it is not an installed distribution, so it
# cannot ask importlib.metadata); tests/unit/test_release.py keeps it equal to pyproject.toml's.
__version__ = "0.1.0"

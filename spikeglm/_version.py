"""The spikeglm version (read by the package, its files and pyproject.toml)."""

__version__ = "0.1.0"

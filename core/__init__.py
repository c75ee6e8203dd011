"""CallPath core: test calls, paths, probes and verdicts. Never imports Qt."""

__version__ = "0.1.0"

"""hwgen: Amaranth generators for spike-driven transformer hardware, and the `hwgen` CLI."""

__version__ = "0.1.0"

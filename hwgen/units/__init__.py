"""Amaranth generators, one module per hardware unit."""

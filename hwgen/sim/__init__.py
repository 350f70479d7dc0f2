"""Simulation plumbing: Verilator through the cocotb runner, file-driven harnesses, hex I/O."""

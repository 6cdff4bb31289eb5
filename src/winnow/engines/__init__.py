"""Execution engines: how batches are scheduled. Stages do not know which one runs them."""

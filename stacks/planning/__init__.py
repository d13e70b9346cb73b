"""One typed `EnvironmentPlan` per environment: pools, GPUs, capacity, load targets and cost.

The capacity model (`capacity`, `model_catalog`) and the pool arithmetic
(`pools`) are computed once here (`plan`) and read by every later step.
"""

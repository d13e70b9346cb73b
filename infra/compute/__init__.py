"""Where replicas run: the EKS cluster, its node pools, scheduling, node autoscaling and EFA.

Nothing is imported here: `scheduling`, `autoscaling`, `efa.plugin` and `efa.rules` are plain
data and functions that service specs and the environment schema use without loading cdktf.
"""

"""What runs inside the cluster: Helm (`helm`, pinned `charts`), the operators and their roles,
the EFA device plugin, and monitoring (`observability`)."""

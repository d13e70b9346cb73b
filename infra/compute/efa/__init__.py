"""Elastic Fabric Adapter: the node side (`plugin`: interfaces, the resource pods ask for, the
device plugin's values), its rules (`rules`) and the network EFA pools share (`network`).
The device plugin's release is `infra.platform.efa_device_plugin`.
"""

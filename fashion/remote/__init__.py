"""Remote training over SSH: settings, connection, file transfer, detached jobs, tunnels.

The command-line entry point is ``fashion/DGX_ssh_comm.py``; its docstring documents usage.
"""
from fashion.remote.settings import RemoteError, Settings, load_settings  # noqa: F401

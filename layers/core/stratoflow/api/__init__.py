"""The REST API: a Powertools resolver (``create_app``) that API Gateway invokes through a
Lambda handler, or that ``local_server`` serves on 127.0.0.1."""

from stratoflow.api.app import create_app
from stratoflow.api.local_server import serve, start_in_thread

__all__ = ["create_app", "serve", "start_in_thread"]

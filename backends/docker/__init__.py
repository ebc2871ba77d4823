"""Docker backend: one container per job on a Docker-API engine (Docker or podman's service).

The profile type (:class:`DockerExecutor`) lives in ``core.engine.executors_docker`` so that
config.toml and the Python API can name it without this package or the docker SDK.
"""

from backends.docker.backend import DockerBackend
from core.engine.executors_docker import DockerExecutor

__all__ = ["DockerBackend", "DockerExecutor"]

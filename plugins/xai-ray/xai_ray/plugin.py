"""Registers the ``ray`` engine (ray is imported only when it runs)."""

from xaicore.plugin import hookimpl


@hookimpl
def register_engines(register):
    register("ray", "xai_ray.engine:RayEngine",
             description="Ray Data actor pool: one model per worker, local Ray or a cluster")

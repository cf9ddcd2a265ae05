"""How a build runs on Ray (``--engine ray``): plain settings, importable without Ray.

The Ray code itself is in ``indexer/ray_build.py``, imported only when a build asks for Ray, so
the local path (the default) never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINES: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class RayConfig:
    """``--ray-address`` and ``--ray-actors``.

    ``address``: a running cluster's GCS address (``HOST:PORT``, as ``ray start --head``
    prints it); ``None`` starts a private local Ray for the job and stops it afterwards.
    ``actors``: the embedding actor pool's size; ``None`` means one actor per GPU of the cluster,
    or one CPU actor where it has no GPU.
    """

    address: str | None = None
    actors: int | None = None

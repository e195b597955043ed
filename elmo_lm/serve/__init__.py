"""`elmo serve`: the HTTP service (needs the `serve` extra: `pip install 'elmo-lm[serve]'`)."""

from .app import ServeSettings, create_app
from .explore import Explorer
from .run import serve

__all__ = ["Explorer", "ServeSettings", "create_app", "serve"]

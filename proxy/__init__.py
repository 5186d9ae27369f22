"""semcache: an OpenAI-compatible caching reverse proxy for LLM APIs."""

from __future__ import annotations

from proxy.app import create_app
from proxy.settings import Settings

__version__ = "0.1.0"
__all__ = ["Settings", "__version__", "create_app"]

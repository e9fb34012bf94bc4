"""The configuration store: SQLAlchemy tables, the repository, the revision counter."""

from llmgate.store.engine import open_engine
from llmgate.store.repository import Item, Reader, Store, Writer

__all__ = ["Item", "Reader", "Store", "Writer", "open_engine"]

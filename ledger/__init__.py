"""libshare's core: content ids, Merkle trail, licences, chain client and storage.

``ledger`` imports no web framework; the FastAPI service and the command line live in
``api`` and call into it.
"""

__version__ = "0.1.0"

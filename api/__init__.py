"""The interfaces over ``ledger``: the FastAPI service and the ``libshare`` command line."""

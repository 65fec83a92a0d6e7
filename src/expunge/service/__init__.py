"""The deletion-request service: API tokens, the job queue in the ledger database, the worker that
serves requests end to end, and the FastAPI app over them (``expunge serve``, ``expunge worker``).

The app itself needs the ``service`` extra (FastAPI, uvicorn); tokens, the queue and the worker
need only the ledger."""

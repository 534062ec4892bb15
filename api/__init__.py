"""The `convlens` CLI (Typer) and HTTP API (FastAPI): submit jobs, follow them, query results."""

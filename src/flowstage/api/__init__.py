"""The REST API face (`/api/v1`, SPEC §5.2): FastAPI routes over the application layer.

`flowstage.api.server.create_app(project)` builds the app; `flowstage server` runs it with uvicorn.
FastAPI is imported only by the modules of this package, never by this file, so the CLI starts
without it unless `server` runs.
"""

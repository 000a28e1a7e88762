"""The application layer: what the CLI, the API and the Python API ask of flowstage.

Start, resume, cancel and detach runs (`runs`, `detached`), find workflows (`workflows`), tell
a live run from an interrupted one (`liveness`), pin a deployed version's files (`code`), and the
registries of executors and notifiers (`registry`). Nothing here changes process-wide state:
one process can host many runs of several projects.
"""

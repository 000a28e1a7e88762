"""The web UI served by `flowstage server` at `/`: server-rendered pages over the REST API.

Pages are Jinja2 templates filled from the same functions the API's routes answer with (so the
UI shows nothing the API would not), with htmx for fragments and a few vendored JavaScript
islands: the graph (cytoscape, positions laid out on the server), the live run (the run's
server-sent events), the log viewer and the editor (CodeMirror). Every asset is inside the
package; no page asks another host for anything.
"""

"""`prgen serve`: GitHub webhooks make prgen sync a repository within seconds.

A webhook is only a hint (DESIGN.md, invariant 11): it marks its repository to be synced
soon, and that sync asks GitHub as every sync does. A full sync every `server.interval`
is the only run that may remove an environment whose PR vanished without an event.

webhook.py  signature, payload -> which repository to sync (pure)
worker.py   the one sync thread: debounced scoped syncs, the scheduled full sync
metrics.py  the Prometheus registry
app.py      the WSGI application (routes)
runner.py   one sync run as the server makes it, and the server's life (waitress, signals)
"""

"""Read-model queries the edges (api/http, api/web, api/cli) run, one module per thing
read: the edges parse, call one of these and render; no SQL lives in api/.

Each function takes a plain ``sqlite3.Connection`` to the read model first (the HTTP
service runs it on a read-pool connection's thread with ``call.read``; the web app and
the CLI on their own connection), except ``log``, whose functions take the log read
pool's async ``rows`` callable (the event store may be SQLite or PostgreSQL).
"""

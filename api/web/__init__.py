"""The web app: server-rendered pages for annotators, moderators and trainers.

A client of the same application service as the HTTP API (api.http.service.Service):
every action is one of its commands, recorded as the same events. No build step; the
little JavaScript there is (ranking by keyboard and drag, markdown preview) is plain.
"""

"""The edge: HTTP ingress for chat requests and SSE streams of session events to browsers.

``api.app.create_app(settings)`` builds the Starlette app; ``api.server.serve`` runs it.
"""

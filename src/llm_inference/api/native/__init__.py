"""The native surface (/api): our own request and response schemas, SSE events and WebSocket, each controller
a thin translation onto the service core (translate.py); its OpenAPI document (docs.py, openapi.py)."""

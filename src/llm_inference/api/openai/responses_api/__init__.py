"""OpenAI's Responses API (POST /v1/responses) over the same chat machinery as /v1/chat/completions.

A package of its own, named for the API, because `api/openai/responses.py` already holds the other endpoints'
response bodies: request.py (the body), translate.py (onto the service's ChatInput), bodies.py and output.py
(the response object), events.py (the stream's events), controller.py (the routes)."""

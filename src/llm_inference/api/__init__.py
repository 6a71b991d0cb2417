"""The HTTP surfaces, each a thin translation to and from service/: native/ (/api, our own schemas), openai/
(/v1, OpenAI's), shared/ (what both translate alike), http/ (the plumbing under both: keys, rate limit, CORS,
body decoding, errors, SSE, drain); health.py (/health) and playground.py (/) stand beside them."""

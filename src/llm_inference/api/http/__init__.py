"""The HTTP plumbing under both surfaces: API keys, rate limit, CORS, JSON bodies and their errors, the one
mapping from failures to statuses, the SSE transport, graceful drain and unread request bodies."""

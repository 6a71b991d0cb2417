"""The OpenAI-compatible surface (/v1): OpenAI's request and response schemas, chunks and error shape, each a
thin translation onto the service core. Kept import-free so that api/http/errors.py can reach the error shape
without importing the controllers."""

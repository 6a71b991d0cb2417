"""State that outlives one request: rate limits, token quotas and sessions, kept in this process or shared by
every replica through a Valkey or Redis server (LLM_STATE_URL)."""

"""What /api and /v1 translate alike: the request fields both accept (schemas.py), the tool fields and tool
rounds (tool_fields.py), logit bias and token log probabilities (vocabulary.py)."""

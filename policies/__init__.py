"""Expansion policies: which compressed chunks go back in as tokens (``refrag_agent.policies``)."""

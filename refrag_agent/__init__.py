"""refrag-agent."""

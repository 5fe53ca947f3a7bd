"""Long-term memory: the SQL timeline and the LanceDB chunk store (``refrag_agent.memory``)."""

"""Tools an agent can call: registry, call protocol and the tool loop (``refrag_agent.tools``)."""

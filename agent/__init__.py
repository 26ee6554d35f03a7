"""The LangGraph agent, the run directory, configuration and the CLI."""

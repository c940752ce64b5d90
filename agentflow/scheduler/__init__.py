"""Leader-only scheduling indexes: DAG, priority, placement, dispatch."""

"""The `agentflow` command: a thin layer over the SDK (`agentflow.client`)."""

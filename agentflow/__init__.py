"""AgentFlow: a gRPC-first distributed task scheduler with its own Raft consensus."""

__version__ = "0.1.0"

"""A master process: Raft + replicated state + the leader's scheduler, served over gRPC and HTTP."""

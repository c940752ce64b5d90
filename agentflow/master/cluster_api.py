"""ClusterService: membership and leadership of the masters."""

from __future__ import annotations

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import scheduler_pb2_grpc, state_pb2
from agentflow.master.leader_only import leader_only
from agentflow.master.runtime import Runtime
from agentflow.master.status import Ctx, abort_for, abort_invalid
from agentflow.raft.types import RaftError

SERVICE = "ClusterService"


class ClusterApi(scheduler_pb2_grpc.ClusterServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def _members(self) -> list[api.Member]:
        st = self.rt.node.status()
        return [
            api.Member(id=n, address=st.addresses.get(n, ""), voter=n in st.voters)
            for n in (*st.voters, *st.learners)
        ]

    async def Status(
        self, request: api.ClusterStatusRequest, context: Ctx
    ) -> api.ClusterStatusResponse:
        st = self.rt.node.status()
        response = api.ClusterStatusResponse(
            node_id=st.node_id,
            leader_id=st.leader,
            leader_address=st.addresses.get(st.leader, ""),
            term=st.term,
            commit_index=st.commit_index,
            applied_index=st.applied_index,
            members=self._members(),
            role=st.role.value,
        )
        for state, count in self.rt.state.counts().items():
            if count:
                response.task_counts[state_pb2.TaskState.Name(state)] = count
        return response

    @leader_only(SERVICE, api.AddMemberResponse)
    async def AddMember(self, request: api.AddMemberRequest, context: Ctx) -> api.AddMemberResponse:
        if not request.node_id:
            await abort_invalid(context, "node_id", "must not be empty")
        if not request.address:
            await abort_invalid(context, "address", "must be host:port")
        st = self.rt.node.status()
        known = st.addresses.get(request.node_id)
        if request.node_id in st.voters and known == request.address:
            return api.AddMemberResponse(members=self._members())  # a retried join
        try:
            await self.rt.node.add_member(request.node_id, request.address)
        except (RaftError, TimeoutError) as exc:
            await abort_for(context, exc, self.rt.node.leader_address())
        return api.AddMemberResponse(members=self._members())

    @leader_only(SERVICE, api.RemoveMemberResponse)
    async def RemoveMember(
        self, request: api.RemoveMemberRequest, context: Ctx
    ) -> api.RemoveMemberResponse:
        if not request.node_id:
            await abort_invalid(context, "node_id", "must not be empty")
        try:
            await self.rt.node.remove_member(request.node_id)
        except (RaftError, TimeoutError) as exc:
            await abort_for(context, exc, self.rt.node.leader_address())
        return api.RemoveMemberResponse(members=self._members())

    @leader_only(SERVICE, api.TransferLeaderResponse)
    async def TransferLeader(
        self, request: api.TransferLeaderRequest, context: Ctx
    ) -> api.TransferLeaderResponse:
        node = self.rt.node
        try:
            if request.node_id:
                if request.node_id not in node.status().voters:
                    await abort_invalid(context, "node_id", f"{request.node_id!r} is not a voter")
                await node.transfer_leadership(request.node_id)
            elif not await node.step_down():
                await abort_invalid(context, "node_id", "no other voter to hand leadership to")
        except (RaftError, TimeoutError) as exc:
            await abort_for(context, exc, node.leader_address())
        return api.TransferLeaderResponse(leader_id=node.leader())

"""ClusterService: membership and leadership of the masters.

`Status` answers with the answering master's own term and indexes, and with the
leader's view of the members: only the leader hears from every member, so only it
knows which are reachable and how far behind each is. A follower asks the leader for
that view (briefly: a status query must still answer when the leader is gone) and
otherwise says the view is its own and why.
"""

from __future__ import annotations

import grpc

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import scheduler_pb2_grpc, state_pb2
from agentflow.master.forwarding import FORWARDED
from agentflow.master.leader_only import leader_only
from agentflow.master.runtime import Runtime
from agentflow.master.status import Ctx, abort_for, abort_invalid
from agentflow.raft.node import MemberProgress
from agentflow.raft.types import NONE, RaftError, Role

SERVICE = "ClusterService"
# How long a follower waits for the leader's view before answering with its own.
LEADER_VIEW_TIMEOUT = 1.0


class ClusterApi(scheduler_pb2_grpc.ClusterServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def _members(self) -> list[api.Member]:
        """The membership, with the replication progress of each member when this
        master leads."""
        node = self.rt.node
        st = node.status()
        progress = {p.node_id: p for p in node.member_progress()}
        members = []
        for n in (*st.voters, *st.learners):
            member = api.Member(id=n, address=st.addresses.get(n, ""), voter=n in st.voters)
            pr = progress.get(n)
            if pr is not None:
                _set_progress(member, pr)
            members.append(member)
        return members

    async def Status(
        self, request: api.ClusterStatusRequest, context: Ctx
    ) -> api.ClusterStatusResponse:
        node = self.rt.node
        st = node.status()
        response = api.ClusterStatusResponse(
            node_id=st.node_id,
            leader_id=st.leader,
            leader_address=st.addresses.get(st.leader, ""),
            term=st.term,
            commit_index=st.commit_index,
            applied_index=st.applied_index,
            members=self._members(),
            role=st.role.value,
            last_index=st.last_index,
            members_view=st.node_id,
        )
        for state, count in self.rt.state.counts().items():
            if count:
                response.task_counts[state_pb2.TaskState.Name(state)] = count
        if st.role is not Role.LEADER and not request.own_view:
            note = await self._leader_view(response, context)
            if note:
                response.members_view_note = note
        return response

    async def _leader_view(self, response: api.ClusterStatusResponse, context: Ctx) -> str:
        """Replace `response.members` by the leader's view; '' if it did, else why not."""
        leader, address = response.leader_id, response.leader_address
        if leader == NONE:
            return "no leader known to this master"
        if not address:
            return f"the address of leader {leader} is unknown to this master"
        remaining = context.time_remaining()
        timeout = (
            LEADER_VIEW_TIMEOUT if remaining is None else min(LEADER_VIEW_TIMEOUT, remaining / 2)
        )
        stub = scheduler_pb2_grpc.ClusterServiceStub(self.rt.forwarder.channel(address))
        try:
            answer: api.ClusterStatusResponse = await stub.Status(
                api.ClusterStatusRequest(own_view=True),
                timeout=timeout,
                metadata=((FORWARDED, response.node_id),),
            )
        except grpc.aio.AioRpcError as exc:
            return f"leader {leader} ({address}) did not answer: {exc.code().name}"
        if answer.role != Role.LEADER.value:
            return f"{leader} ({address}) no longer leads (it is {answer.role or 'unknown'})"
        del response.members[:]
        response.members.extend(answer.members)
        response.members_view = answer.node_id
        return ""

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


def _set_progress(member: api.Member, pr: MemberProgress) -> None:
    member.progress_known = True
    member.match_index = pr.match
    member.lag = pr.lag
    member.reachable = pr.reachable
    member.contacted = pr.heard
    member.last_contact_seconds = pr.idle_seconds
    member.replication = pr.state

"""The broker's receive-pack gate: the push advertisement shows only the output branch,
and a push is parsed, checked per ref, and forwarded to the upstream only when allowed.

Tradeoff: the push request is spooled to a temporary file on disk, not held in memory.
Nothing may reach the upstream before the decision, and the fast-forward and CI checks
need the pack indexed in a quarantine next to a bare mirror of the upstream. A push therefore
costs one extra write and read of the pack on the broker's disk, and the upstream starts
receiving only after the client has sent everything. A push that the
ref names alone reject is drained without being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp
from aiohttp import web

from devaipod.broker.advertisement import parse_ref_advertisement
from devaipod.broker.audit import AuditLog, AuditWriteError
from devaipod.broker.mirror import MirrorError, PackQuarantine, RepoMirror
from devaipod.broker.pktline import ProtocolError
from devaipod.broker.receive_pack import Command, ReceivePackParser
from devaipod.broker.ref_policy import (
    REASON_PREFIX,
    PushDecision,
    RefDecision,
    check_ref_updates,
    decide_push,
    encode_report_status,
    is_ci_path,
    needs_ancestry_check,
    needs_ci_check,
    rewrite_receive_pack_advertisement,
)
from devaipod.broker.report_status import ReportStatusReader
from devaipod.broker.upstream_http import (
    CHUNK_BYTES,
    RECEIVE_PACK,
    UpstreamClient,
    UpstreamStatusError,
    fetch_receive_pack_advertisement,
    stream_back,
    upstream_failure,
)
from devaipod.broker.upstreams import ScopedRepo
from devaipod.scope.model import RepoOutput

log = logging.getLogger(__name__)

# A plain `side-band` packet carries at most 1000 bytes, a `side-band-64k` packet 65520.
_SIDEBAND_PACKET_LENGTH = 1000
# Ceiling on one receive-pack request body, so that a push cannot fill the broker's disk.
# NOTE: an estimate matching the 2 GiB push limit that GitHub documents; it is not yet a
# broker option.
MAX_PUSH_BYTES = 2 * 1024**3
# Refspecs the mirror fetches before an ancestry or CI check. The pushed pack may be thin
# against any advertised tip (including `.have` lines), so the mirror needs them all.
_MIRROR_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


@dataclass
class ParsedPush:
    """The head of a receive-pack request, and the position of its pack in the spool file."""

    commands: list[Command] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)
    push_options: list[str] = field(default_factory=list)
    push_certificate: bool = False
    body_bytes: int = 0
    pack_offset: int = 0
    pack_bytes: int = 0
    early_decision: PushDecision | None = None
    """The rejection decided from the request head alone, if any (the body was then drained)."""

    @property
    def sideband_packet_length(self) -> int | None:
        """The side-band packet size the client chose, or None without side-band."""
        if "side-band-64k" in self.capabilities:
            return 65520
        if "side-band" in self.capabilities:
            return _SIDEBAND_PACKET_LENGTH
        return None


class PushTooLargeError(Exception):
    """The receive-pack request body is larger than the broker accepts."""


def deny_all(commands: list[Command], reason: str) -> PushDecision:
    """Return a decision that rejects every command with `reason`."""
    refs = [
        RefDecision(command.ref, command.old_oid, command.new_oid, False, REASON_PREFIX + reason)
        for command in commands
    ]
    return PushDecision(allowed=False, refs=refs)


async def spool_and_parse(
    request: web.Request, spool: Path, output: RepoOutput, *, max_bytes: int = MAX_PUSH_BYTES
) -> ParsedPush:
    """Write the request body to `spool` while the receive-pack parser reads its head.

    Once the head is parsed, the ref names are checked. When that already rejects the
    push, the rest of the body is read and dropped, so a refused pack never touches disk.
    Raises ProtocolError when the body is not a valid receive-pack request, and
    PushTooLargeError as soon as it exceeds `max_bytes`.
    """
    parser = ReceivePackParser()
    push = ParsedPush()
    head_checked = False
    with spool.open("wb") as sink:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            push.body_bytes += len(chunk)
            if push.body_bytes > max_bytes:
                raise PushTooLargeError(f"the push is larger than {max_bytes} bytes")
            parser.feed(chunk)
            if push.early_decision is None:
                sink.write(chunk)
            if parser.head_complete and not head_checked:
                head_checked = True
                static = check_ref_updates(
                    parser.commands,
                    parser.capabilities,
                    output,
                    push_certificate=parser.push_certificate,
                    push_options=parser.push_options,
                )
                if not static.allowed:
                    push.early_decision = static
        parser.finish()

    push.commands = list(parser.commands)
    push.capabilities = list(parser.capabilities)
    push.push_options = list(parser.push_options)
    push.push_certificate = parser.push_certificate
    push.pack_offset = parser.head_length
    push.pack_bytes = parser.pack_length
    return push


def _log_prefetch_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.warning("background mirror fetch failed: %s", error)


class PushGate:
    """Both receive-pack endpoints of the broker: discovery and the push itself."""

    def __init__(
        self,
        *,
        audit_log: AuditLog,
        client: UpstreamClient,
        upstream_authorization: str,
        state_dir: Path,
    ) -> None:
        self._audit = audit_log
        self._client = client
        self._upstream_authorization = upstream_authorization
        self._state_dir = state_dir
        self._spool_dir = state_dir / "spool"
        self._mirrors: dict[str, RepoMirror] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._prefetches: dict[str, asyncio.Task[None]] = {}

    def _record(
        self,
        repo: ScopedRepo,
        decision: Literal["allow", "deny"],
        reason: str,
        *,
        upstream_status: int | None = None,
        path: str = RECEIVE_PACK,
    ) -> bool:
        try:
            self._audit.record(
                kind="git-push",
                decision=decision,
                reason=reason,
                repository=repo.upstream_url,
                path=path,
                upstream_status=upstream_status,
            )
        except AuditWriteError as error:
            log.error("audit log write failed for a push to %s: %s", repo.key, error)
            return False
        return True

    async def discovery(self, request: web.Request, repo: ScopedRepo) -> web.StreamResponse:
        """Serve `info/refs?service=git-receive-pack` listing only the output branch."""
        output = repo.scope.output
        assert output is not None
        try:
            advertisement = await fetch_receive_pack_advertisement(
                self._client,
                repo,
                self._upstream_authorization,
                request.headers.get("User-Agent"),
            )
            rewritten = rewrite_receive_pack_advertisement(advertisement, output.target_ref)
        except UpstreamStatusError as error:
            log.warning("receive-pack discovery on upstream %s failed: %s", repo.key, error)
            self._record(
                repo,
                "deny",
                f"upstream discovery failed: {error}",
                upstream_status=error.status,
                path="info/refs",
            )
            return upstream_failure(error.status)
        except (aiohttp.ClientError, ProtocolError) as error:
            log.warning("receive-pack discovery on upstream %s failed: %s", repo.key, error)
            self._record(repo, "deny", "upstream discovery failed", path="info/refs")
            return web.Response(status=502, text="upstream request failed\n")

        if output.target_ref in parse_ref_advertisement(advertisement).tips or (
            not output.allowCiChanges
        ):
            self._start_prefetch(repo, output)

        reason = f"advertised only {output.target_ref} for push"
        if not self._record(repo, "allow", reason, upstream_status=200, path="info/refs"):
            return web.Response(status=503, text="the broker cannot write its audit log\n")
        return web.Response(
            status=200,
            body=rewritten,
            content_type=f"application/x-{RECEIVE_PACK}-advertisement",
            headers={"Cache-Control": "no-cache"},
        )

    def _mirror(self, repo: ScopedRepo) -> RepoMirror:
        return self._mirrors.setdefault(repo.key, RepoMirror(self._state_dir, repo.upstream_url))

    def _start_prefetch(self, repo: ScopedRepo, output: RepoOutput) -> None:
        """Update the mirror in the background while git packs and sends its push.

        An update of an existing output branch needs the mirror for the ancestry check,
        and any push for the CI check unless the scope allows CI changes. On a new mirror
        that first fetch is a whole clone, so it starts at discovery.
        """
        if output.allowForcePush and output.allowCiChanges:
            return
        running = self._prefetches.get(repo.key)
        if running is not None and not running.done():
            return
        mirror = self._mirror(repo)
        task = asyncio.create_task(
            asyncio.to_thread(mirror.fetch, list(_MIRROR_REFSPECS), self._upstream_authorization)
        )
        task.add_done_callback(_log_prefetch_failure)
        self._prefetches[repo.key] = task

    async def _wait_for_prefetch(self, repo: ScopedRepo) -> None:
        task = self._prefetches.pop(repo.key, None)
        if task is None:
            return
        # A failed prefetch was logged already; the fetch before the ancestry check decides.
        with contextlib.suppress(MirrorError):
            await task

    async def push(self, request: web.Request, repo: ScopedRepo) -> web.StreamResponse:
        """Check a `git-receive-pack` POST and forward it to the upstream if allowed."""
        output = repo.scope.output
        assert output is not None
        encoding = request.headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            # git never compresses receive-pack requests, and a compressed one cannot be parsed.
            log.warning("rejected a push to %s with Content-Encoding %s", repo.key, encoding)
            self._record(repo, "deny", f"unsupported Content-Encoding {encoding}")
            return web.Response(status=415, text="compressed push requests are not supported\n")

        # A full disk fails the spool write, and the push is rejected with HTTP 500.
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        lock = self._locks.setdefault(repo.key, asyncio.Lock())
        async with lock:
            with tempfile.TemporaryDirectory(prefix="push-", dir=self._spool_dir) as work_dir:
                work = Path(work_dir)
                spool = work / "request"
                try:
                    push = await spool_and_parse(request, spool, output, max_bytes=MAX_PUSH_BYTES)
                except ProtocolError as error:
                    reason = f"invalid receive-pack request: {error}"
                    log.warning("rejected a push to %s: %s", repo.key, reason)
                    self._record(repo, "deny", reason)
                    return web.Response(status=400, text=reason + "\n")
                except PushTooLargeError as error:
                    log.warning("rejected a push to %s: %s", repo.key, error)
                    self._record(repo, "deny", str(error))
                    return web.Response(status=413, text=f"{error}\n")
                except OSError as error:
                    log.error("spooling a push to %s in %s failed: %s", repo.key, work, error)
                    self._record(repo, "deny", "the broker could not store the push")
                    return web.Response(status=500, text="the broker could not store the push\n")

                if not push.commands:
                    # git sends a bare flush packet as a probe before a large push body, to
                    # trigger authentication; it updates nothing, so the upstream never sees it.
                    log.debug("answered a receive-pack probe for %s locally", repo.key)
                    return web.Response(
                        status=200, body=b"", content_type=f"application/x-{RECEIVE_PACK}-result"
                    )

                decision = push.early_decision or await self._decide(
                    request, repo, output, push, spool, work
                )
                if not self._record_decision(repo, decision):
                    decision = deny_all(push.commands, "the broker cannot write its audit log")
                if not decision.allowed:
                    return self._report_rejection(push, decision)
                return await self._forward(request, repo, push, spool)

    async def _decide(
        self,
        request: web.Request,
        repo: ScopedRepo,
        output: RepoOutput,
        push: ParsedPush,
        spool: Path,
        work: Path,
    ) -> PushDecision:
        try:
            advertisement = await fetch_receive_pack_advertisement(
                self._client,
                repo,
                self._upstream_authorization,
                request.headers.get("User-Agent"),
            )
            upstream_tips = parse_ref_advertisement(advertisement).tips
        except (UpstreamStatusError, aiohttp.ClientError, ProtocolError) as error:
            log.warning("reading the branches of upstream %s failed: %s", repo.key, error)
            return deny_all(push.commands, "the upstream's current branches could not be read")

        mirror = self._mirror(repo)
        quarantine = PackQuarantine(mirror, work)
        if needs_ancestry_check(push.commands, output, upstream_tips) or needs_ci_check(
            push.commands, output, upstream_tips
        ):
            await self._wait_for_prefetch(repo)
            try:
                await asyncio.to_thread(
                    mirror.fetch, list(_MIRROR_REFSPECS), self._upstream_authorization
                )
                if push.pack_bytes > 0:
                    await asyncio.to_thread(quarantine.index_pack, spool, push.pack_offset)
            except MirrorError as error:
                log.warning("preparing the push checks for %s failed: %s", repo.key, error)
                return deny_all(push.commands, "the broker could not check the pushed commits")

        return await asyncio.to_thread(
            decide_push,
            push.commands,
            push.capabilities,
            output,
            upstream_tips,
            quarantine.is_ancestor,
            find_ci_path=lambda tip: quarantine.first_changed_path(tip, is_ci_path),
            push_certificate=push.push_certificate,
            push_options=push.push_options,
        )

    def _record_decision(self, repo: ScopedRepo, decision: PushDecision) -> bool:
        verdict: Literal["allow", "deny"] = "allow" if decision.allowed else "deny"
        try:
            for ref in decision.refs:
                self._audit.record(
                    kind="git-push",
                    decision=verdict,
                    reason=ref.reason.removeprefix(REASON_PREFIX),
                    repository=repo.upstream_url,
                    ref=ref.ref,
                    old_oid=ref.old_oid,
                    new_oid=ref.new_oid,
                )
        except AuditWriteError as error:
            log.error("audit log write failed for a push to %s: %s", repo.key, error)
            return False
        for ref in decision.refs:
            outcome = "allowed" if decision.allowed else "denied"
            # %r: ref names and reasons may carry the agent's control characters.
            log.info("push to %s %r %s: %r", repo.key, ref.ref, outcome, ref.reason)
        return True

    def _report_rejection(self, push: ParsedPush, decision: PushDecision) -> web.Response:
        packet_length = push.sideband_packet_length
        if packet_length is None:
            body = encode_report_status(decision, unpack_ok=True, sideband=False)
        else:
            body = encode_report_status(
                decision, unpack_ok=True, sideband=True, max_packet_length=packet_length
            )
        return web.Response(
            status=200,
            body=body,
            content_type=f"application/x-{RECEIVE_PACK}-result",
            headers={"Cache-Control": "no-cache"},
        )

    async def _forward(
        self, request: web.Request, repo: ScopedRepo, push: ParsedPush, spool: Path
    ) -> web.StreamResponse:
        headers = {
            "Authorization": self._upstream_authorization,
            "Content-Type": f"application/x-{RECEIVE_PACK}-request",
            "Accept": f"application/x-{RECEIVE_PACK}-result",
            "Content-Length": str(push.body_bytes),
        }
        user_agent = request.headers.get("User-Agent")
        if user_agent:
            headers["User-Agent"] = user_agent

        status: int | None = None
        report = ReportStatusReader(sideband=push.sideband_packet_length is not None)
        try:
            with spool.open("rb") as body:
                async with self._client.session.post(
                    f"{repo.upstream_url}/{RECEIVE_PACK}",
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                ) as upstream:
                    status = upstream.status
                    if status != 200:
                        log.warning("upstream %s returned HTTP %d to a push", repo.key, status)
                        return upstream_failure(status)
                    return await stream_back(request, upstream, report.feed)
        except aiohttp.ClientError as error:
            log.warning("forwarding a push to %s failed: %s", repo.key, error)
            report.error = f"forwarding failed: {error}"
            return web.Response(status=502, text="upstream request failed\n")
        finally:
            self._record_upstream_result(repo, push, report, status)

    def _record_upstream_result(
        self,
        repo: ScopedRepo,
        push: ParsedPush,
        report: ReportStatusReader,
        status: int | None,
    ) -> None:
        """Record what the upstream did with a forwarded push, one audit line per ref."""
        if status != 200 or report.error is not None or report.unpack is None:
            detail = report.error or "no report-status"
            reason = f"push forwarded to the upstream ({detail})"
            self._record(repo, "allow", reason, upstream_status=status)
            return

        try:
            for command in push.commands:
                ref_status = report.refs.get(command.ref)
                if ref_status is None:
                    outcome = "upstream sent no status for this ref"
                elif ref_status.ok:
                    outcome = "upstream accepted the update"
                else:
                    outcome = f"upstream rejected the update: {ref_status.message}"
                if report.unpack != "ok":
                    outcome += f" (unpack {report.unpack})"
                self._audit.record(
                    kind="git-push",
                    decision="allow",
                    reason=outcome,
                    repository=repo.upstream_url,
                    ref=command.ref,
                    old_oid=command.old_oid,
                    new_oid=command.new_oid,
                    upstream_status=status,
                )
                log.info("push to %s %r forwarded: %s", repo.key, command.ref, outcome)
        except AuditWriteError as error:
            log.error("audit log write failed after a push to %s: %s", repo.key, error)

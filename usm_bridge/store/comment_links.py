"""Comment links: which remote comment is the bridge's copy of which canonical one, so that a
copy read back is not copied again."""

from __future__ import annotations

import sqlalchemy as sa

from usm_bridge.errors import StoreError
from usm_bridge.model import utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.records import CommentLink
from usm_bridge.store.unit_of_work import UnitOfWork, guarded

__all__ = ["CommentLinks"]


class CommentLinks(UnitOfWork):
    """A unit of work's comment links."""

    @guarded
    def link_comment(
        self,
        call_id: str,
        instance: str,
        comment_id: str,
        *,
        source_comment_id: str,
        remote_comment_id: str | None = None,
    ) -> CommentLink:
        """Record that ``comment_id`` on the call's record in ``instance`` copies a comment.

        Linking the same copy again returns the existing link (adding the remote id if given).

        :raises StoreError: that comment was already copied onto the call under another id.
        """
        links = t.comment_links
        existing = self.find_comment_copy(call_id, source_comment_id)
        if existing is not None:
            if (existing.instance, existing.comment_id) != (instance, comment_id):
                raise StoreError(
                    f"comment {source_comment_id!r} is already copied onto call {call_id!r} "
                    f"as {existing.comment_id!r}"
                )
            if remote_comment_id is not None and existing.remote_comment_id is None:
                return self.set_comment_remote_id(instance, comment_id, remote_comment_id)
            return existing
        now = utcnow()
        self._conn.execute(
            links.insert().values(
                call_id=call_id,
                instance=instance,
                comment_id=comment_id,
                source_comment_id=source_comment_id,
                remote_comment_id=remote_comment_id,
                created_at=now,
                updated_at=now,
            )
        )
        found = self.find_comment_copy(call_id, source_comment_id)
        assert found is not None
        return found

    @guarded
    def set_comment_remote_id(
        self, instance: str, comment_id: str, remote_comment_id: str
    ) -> CommentLink:
        """Remember the tool's id of the copy once the tool accepted it.

        :raises StoreError: no such comment link.
        """
        links = t.comment_links
        done = self._conn.execute(
            links.update()
            .where(links.c.instance == instance, links.c.comment_id == comment_id)
            .values(remote_comment_id=remote_comment_id, updated_at=utcnow())
        )
        if done.rowcount != 1:
            raise StoreError(f"no comment link {comment_id!r} in {instance!r}")
        row = (
            self._conn.execute(
                sa.select(links).where(
                    links.c.instance == instance, links.c.comment_id == comment_id
                )
            )
            .mappings()
            .one()
        )
        return CommentLink.model_validate(dict(row))

    @guarded
    def find_comment_copy(self, call_id: str, source_comment_id: str) -> CommentLink | None:
        """The copy of ``source_comment_id`` on ``call_id``, if the bridge made one."""
        links = t.comment_links.c
        return self._one_comment_link(
            links.call_id == call_id, links.source_comment_id == source_comment_id
        )

    @guarded
    def find_comment_link(self, instance: str, remote_comment_id: str) -> CommentLink | None:
        """The link of a remote comment, if it is the bridge's copy of another comment."""
        links = t.comment_links.c
        return self._one_comment_link(
            links.instance == instance, links.remote_comment_id == remote_comment_id
        )

    @guarded
    def comment_links_of(self, call_id: str, instance: str) -> list[CommentLink]:
        """Every copy the bridge made (or asked for) on the call's record in ``instance``."""
        links = t.comment_links
        rows = self._conn.execute(
            sa.select(links)
            .where(links.c.call_id == call_id, links.c.instance == instance)
            .order_by(links.c.id)
        )
        return [CommentLink.model_validate(dict(row)) for row in rows.mappings()]

    def _one_comment_link(self, *conditions: sa.ColumnElement[bool]) -> CommentLink | None:
        row = self._conn.execute(sa.select(t.comment_links).where(*conditions)).mappings().first()
        return None if row is None else CommentLink.model_validate(dict(row))

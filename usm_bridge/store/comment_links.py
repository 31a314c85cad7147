"""Comment links: which remote comment is the bridge's copy of which canonical one, so that a
copy read back is not copied again."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from usm_bridge.errors import StoreError
from usm_bridge.model import utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.records import CommentLink
from usm_bridge.store.unit_of_work import UnitOfWork, guarded

__all__ = ["CommentLinks"]

_links = t.comment_links
_b_instance: sa.BindParameter[str] = sa.bindparam("b_instance")
_b_comment_id: sa.BindParameter[str] = sa.bindparam("b_comment_id")
_INSERT_LINK = _links.insert()
_of_copy = (_links.c.instance == _b_instance, _links.c.comment_id == _b_comment_id)
_SET_REMOTE_ID = _links.update().where(*_of_copy)
_SELECT_COPY = sa.select(_links).where(*_of_copy)
_FIND_COPY = sa.select(_links).where(
    _links.c.call_id == sa.bindparam("b_call_id"),
    _links.c.source_comment_id == sa.bindparam("b_source_comment_id"),
)
_FIND_LINK = sa.select(_links).where(
    _links.c.instance == _b_instance,
    _links.c.remote_comment_id == sa.bindparam("b_remote_comment_id"),
)
_LINKS_OF = (
    sa.select(_links)
    .where(_links.c.call_id == sa.bindparam("b_call_id"), _links.c.instance == _b_instance)
    .order_by(_links.c.id)
)


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
            _INSERT_LINK,
            {
                "call_id": call_id,
                "instance": instance,
                "comment_id": comment_id,
                "source_comment_id": source_comment_id,
                "remote_comment_id": remote_comment_id,
                "created_at": now,
                "updated_at": now,
            },
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
        copy = {"b_instance": instance, "b_comment_id": comment_id}
        done = self._conn.execute(
            _SET_REMOTE_ID,
            {**copy, "remote_comment_id": remote_comment_id, "updated_at": utcnow()},
        )
        if done.rowcount != 1:
            raise StoreError(f"no comment link {comment_id!r} in {instance!r}")
        row = self._conn.execute(_SELECT_COPY, copy).mappings().one()
        return CommentLink.model_validate(dict(row))

    @guarded
    def find_comment_copy(self, call_id: str, source_comment_id: str) -> CommentLink | None:
        """The copy of ``source_comment_id`` on ``call_id``, if the bridge made one."""
        return self._one_comment_link(
            _FIND_COPY, {"b_call_id": call_id, "b_source_comment_id": source_comment_id}
        )

    @guarded
    def find_comment_link(self, instance: str, remote_comment_id: str) -> CommentLink | None:
        """The link of a remote comment, if it is the bridge's copy of another comment."""
        return self._one_comment_link(
            _FIND_LINK, {"b_instance": instance, "b_remote_comment_id": remote_comment_id}
        )

    @guarded
    def comment_links_of(self, call_id: str, instance: str) -> list[CommentLink]:
        """Every copy the bridge made (or asked for) on the call's record in ``instance``."""
        rows = self._conn.execute(_LINKS_OF, {"b_call_id": call_id, "b_instance": instance})
        return [CommentLink.model_validate(dict(row)) for row in rows.mappings()]

    def _one_comment_link(
        self, query: sa.Select[Any], params: dict[str, str]
    ) -> CommentLink | None:
        row = self._conn.execute(query, params).mappings().first()
        return None if row is None else CommentLink.model_validate(dict(row))

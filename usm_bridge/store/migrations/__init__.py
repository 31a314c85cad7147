"""Alembic migrations of the store, shipped inside the package; run by ``Store.open`` on a new
store and by ``Store.upgrade`` (``usm-bridge db upgrade``) on an older one."""

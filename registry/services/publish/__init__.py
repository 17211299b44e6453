"""Publishing (docs/design.md §4): declare files, send missing blobs, commit atomically.

Three jobs, one module each:

* :mod:`.uploads`: phases 1 and 2, negotiating an upload (which blobs to send
  and how) and receiving its blobs into the content-addressed store.
* :mod:`.checks`: what may be published, the manifest at phase 1 and the
  content (safetensors headers, PEFT config, base-model shapes, no pickle) at
  phase 3.
* :mod:`.versions`: phase 3's database writes, one transaction per commit; the
  same manifest digest again returns the existing version.

Routes call the phase functions; trusted server-side code (a job's result, the
Hub write side) calls :func:`publish_server_side` with a :class:`PublishSpec`,
which runs the same three phases in-process (:mod:`.server_side`).
"""

from __future__ import annotations

from registry.services.publish.server_side import publish_server_side
from registry.services.publish.specs import (
    ParentLink,
    PublishFile,
    PublishSpec,
    StoredBlob,
    folder_files,
)
from registry.services.publish.uploads import (
    complete_blob,
    complete_upload_blob,
    create_upload,
    declared_size,
    find_open_upload,
    held_by,
    needs_bytes,
    open_blob_upload,
    open_upload,
    store_received_blob,
)
from registry.services.publish.versions import commit_upload

__all__ = [
    "ParentLink",
    "PublishFile",
    "PublishSpec",
    "StoredBlob",
    "commit_upload",
    "complete_blob",
    "complete_upload_blob",
    "create_upload",
    "declared_size",
    "folder_files",
    "find_open_upload",
    "held_by",
    "needs_bytes",
    "open_blob_upload",
    "open_upload",
    "publish_server_side",
    "store_received_blob",
]

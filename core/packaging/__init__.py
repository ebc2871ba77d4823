"""Packaging: turn the user's code into one deterministic archive and record its provenance.

Packagers (NeMo Run names): :class:`Packager` (nothing), :class:`GitArchivePackager`,
:class:`PatternPackager`, :class:`HybridPackager`. ``package(dest_dir)`` writes
``<dest_dir>/<sha256>.tar.gz``; the sha256 identifies the code. :mod:`.upload` moves an
archive to a remote cache (content-addressed, so unchanged code is never re-sent) and
extracts it there after verifying its hash; :mod:`.extract` is the one extraction policy
(member checks, hash, mtimes) both the local backend and that path follow.

Importing this package is cheap: GitPython is imported when a git packager first runs.
"""

from core.packaging.archive import (
    ARCHIVE_MTIME,
    ArchiveError,
    ArchiveInfo,
    Entry,
    ProgressFn,
    file_sha256,
    list_archive,
    write_archive,
)
from core.packaging.base import (
    Collected,
    Packager,
    PackageResult,
    PackagingError,
    SubmoduleError,
    UncommittedChangesError,
    UnsafeEntryError,
    as_packager,
    packager_from_dict,
)
from core.packaging.git_archive import POLICIES, GitArchivePackager
from core.packaging.hybrid import HybridPackager
from core.packaging.pattern import PatternPackager
from core.packaging.provenance import Provenance, diff_provenance, strip_url_credentials
from core.packaging.upload import (
    ArchiveIntegrityError,
    RateMeter,
    UploadResult,
    extract_archive,
    remote_archive_path,
    remote_sha256,
    upload_archive,
)

__all__ = [
    "ARCHIVE_MTIME",
    "POLICIES",
    "ArchiveError",
    "ArchiveInfo",
    "ArchiveIntegrityError",
    "Collected",
    "Entry",
    "GitArchivePackager",
    "HybridPackager",
    "PackageResult",
    "Packager",
    "PackagingError",
    "PatternPackager",
    "ProgressFn",
    "Provenance",
    "RateMeter",
    "SubmoduleError",
    "UncommittedChangesError",
    "UnsafeEntryError",
    "UploadResult",
    "as_packager",
    "diff_provenance",
    "extract_archive",
    "file_sha256",
    "list_archive",
    "packager_from_dict",
    "remote_archive_path",
    "remote_sha256",
    "strip_url_credentials",
    "upload_archive",
    "write_archive",
]

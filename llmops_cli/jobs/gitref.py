"""Git revisions on disk: find the repository a file is in, resolve a ref
(``origin/main``, a sha, ``HEAD~1``) to a commit, and check a commit's tree
out into a private temporary folder — so that a config and every file it
names are read as they are at that commit — and tell whether files have
uncommitted changes.

The checkout (:class:`Checkout`) goes through a private index
(``GIT_INDEX_FILE`` in the temporary folder: ``git read-tree`` then
``git checkout-index --all --prefix``): it writes nothing into the
repository (no ``.git/worktrees`` entry, no lock on a branch; the user's
index and working tree are never touched), so a process killed outright
leaves at most a temporary folder, never a stale worktree. Unlike ``git
archive`` it keeps files marked ``export-ignore``, and it applies the
repository's checkout filters (line endings, Git LFS smudge) as a checkout
does. Submodules are not checked out (their folders stay empty).

Every git failure is a :class:`~llmops_cli.core.errors.GitError` (exit 2) with
git's own one-line reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from llmops_cli.core.errors import GitError


def git(repo: str | Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``git -C repo ARGS`` and return its stdout, stripped.

    Raises:
        GitError: git is not installed, or it failed (the message is git's
            last line on stderr)."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise GitError(repo, None, "git is not installed (needed for --baseline-ref)") from None
    except OSError as e:
        raise GitError(repo, None, f"cannot run git: {e.strerror or e}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise GitError(repo, None, (lines[-1] if lines else f"git {args[0]} exited {done.returncode}").strip())
    return done.stdout.strip()


def repository(path: str | Path) -> Path:
    """The top folder of the git working tree holding ``path`` (a file or a
    folder; absolute, symbolic links resolved).

    Raises:
        GitError: ``path`` is not inside a git working tree, or git is missing."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        folder = folder.parent
    try:
        return Path(git(folder, "rev-parse", "--show-toplevel")).resolve()
    except GitError as e:
        raise GitError(folder, None, f"not inside a git repository ({e.message})") from None


def resolve(repo: Path, ref: str) -> str:
    """The full sha of the commit ``ref`` names in ``repo``.

    Raises:
        GitError: ``ref`` names no commit (unknown, or a tree or blob)."""
    if not ref or ref.startswith("-"):  # never an option to git
        raise GitError(repo, None, f"{ref!r} is not a commit")
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except GitError:
        raise GitError(repo, None, f"{ref!r} is not a commit in this repository (fetch it first, e.g. "
                                   "`git fetch origin main`; a shallow CI checkout needs fetch-depth: 0)") from None


def short(repo: Path, commit: str) -> str:
    """The abbreviated sha of ``commit`` (unique in ``repo``, at least 7 digits)."""
    return git(repo, "rev-parse", "--short", commit)


def head(repo: Path) -> str | None:
    """The full sha of ``HEAD``; None in a repository without a commit."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    except GitError:
        return None


def has_changes(repo: Path, paths: list[Path]) -> bool:
    """Whether any of ``paths`` (absolute) differs from ``HEAD`` in the
    working tree: modified, staged, deleted, untracked or ignored. Paths
    outside ``repo`` are skipped."""
    inside = []
    for p in paths:
        try:
            inside.append(str(Path(p).resolve().relative_to(repo)))
        except ValueError:
            continue
    if not inside:
        return False
    out = git(repo, "--literal-pathspecs", "status", "--porcelain", "-z", "--untracked-files=all", "--ignored",
              "--", *inside)
    return bool(out)


class Checkout:
    """The tree of ``commit`` checked out into a new temporary folder
    (:attr:`path`), until :meth:`close` (also as a context manager; closing
    twice is harmless). The repository is not modified.

    Raises:
        GitError: the checkout failed (the temporary folder is removed)."""

    def __init__(self, repo: Path, commit: str):
        self.repo, self.commit = repo, commit
        self._tmp: str | None = tempfile.mkdtemp(prefix="llmops-ref-")
        self.path = Path(self._tmp) / "tree"
        try:
            env = {"GIT_INDEX_FILE": str(Path(self._tmp) / "index")}
            git(repo, "read-tree", commit, env=env)
            git(repo, "checkout-index", "--all", "--force", f"--prefix={self.path}{os.sep}", env=env)
            self.path.mkdir(exist_ok=True)  # an empty tree checks out nothing
        except BaseException:  # Ctrl-C included: nothing left behind
            self.close()
            raise

    def close(self) -> None:
        """Remove the temporary folder."""
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> "Checkout":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""One exception root for everything hfbundle reports to a user.

Every error carries a message that says what went wrong *and* how to fix it (``hint``). The CLI maps the
families below to exit codes (``UsageError`` → 2, everything else → 1) and prints one line plus the hint,
never a traceback (``HFBUNDLE_DEBUG=1`` shows it).
"""

from __future__ import annotations


class HfBundleError(Exception):
    """Root of all hfbundle errors. ``hint`` tells the user how to fix the problem."""

    exit_code = 1
    # True when the *source* went away (a registry or network outage), not when the content is bad: an install
    # then keeps the blobs it verified for the re-run, as after a kill (bundler.cache.leftovers), instead of
    # removing them.
    interrupted = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(HfBundleError):
    """The command line or API was called wrongly (unknown recipe, bad spec, bad option)."""

    exit_code = 2


class RecipeError(UsageError):
    """A recipe file is malformed, has unknown keys or bad values."""


class ResolveError(HfBundleError):
    """A repo, revision, file or variant could not be resolved on the Hub."""


class IntegrityError(HfBundleError):
    """Content does not match its expected hash or size."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.expected = expected
        self.actual = actual


class BundleFormatError(HfBundleError):
    """A bundle is corrupt, truncated, crafted or of an unknown format version."""


class UnsafePathError(BundleFormatError):
    """A path from a bundle or manifest would escape its folder or is otherwise unsafe."""


class InstallError(HfBundleError):
    """The cache could not be written (permissions, disk full, locked)."""


class CacheError(HfBundleError):
    """A cache is damaged or not a Hugging Face cache."""


class RunError(HfBundleError):
    """The runner could not load or run a pipeline."""


class RegistryError(HfBundleError):
    """A registry (or OCI layout) refused a request or could not be reached. ``status`` is the HTTP status,
    0 when no answer came. Messages never carry credentials or tokens."""

    interrupted = True

    def __init__(self, message: str, *, status: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status

"""What the kit may run and allocate while it restores a model: the trust policy of one invocation.

Files are data. A checkpoint, training state, loop file, run folder or upload may *name* a model
source, but code runs only where the user names it in this invocation: the ``MODEL`` argument,
``--model-source file.py:factory`` (or ``pkg.module:factory``), ``--teacher``, the ``model.source``
of a recipe given on the command line, or ``trust_sources(...)`` in Python. A Hugging Face folder's
own Python (``auto_map``) runs only with ``--trust-remote-code``. Sizes a file declares are checked
against :attr:`TrustPolicy.max_params` before anything of that size is allocated.

The policy is held in a context variable, so the library functions deep in the call graph
(:func:`sparsekit.models.build.rebuild_from_source`, the Hugging Face loader) read it without every
caller passing it along; the CLI and the recipe runner set it once per invocation.
"""

from __future__ import annotations

import contextlib
import hashlib
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from sparsekit.errors import ResourceLimitError, UntrustedSourceError

DEFAULT_MAX_PARAMS = 20_000_000_000
"""Parameters a model built from a file's description may have (20 B) unless ``--max-params`` says otherwise."""

_DATA_PREFIXES = ("hf:", "torchvision:")
"""Source prefixes that name data (a folder) or a registered builder, never code."""


@dataclass(frozen=True)
class CodeRef:
    """One piece of code a source names.

    Attributes:
        target: the resolved file path (``file.py:factory``) or the module name (``pkg.module:factory``).
        attr: the callable's name.
        digest: sha256 of the file's bytes (empty for modules), so a file changed after it was
            allowed is no longer the code the user named.
    """

    target: str
    attr: str
    digest: str = ""

    def __str__(self) -> str:
        return f"{self.target}:{self.attr}"


@dataclass(frozen=True)
class TrustPolicy:
    """What one invocation allows.

    Attributes:
        sources: the code sources the user named (:class:`CodeRef`).
        remote_code: whether a Hugging Face folder's own Python may run (``--trust-remote-code``).
        max_params: the most parameters a model built from a file's description may have.
    """

    sources: frozenset[CodeRef] = frozenset()
    remote_code: bool = False
    max_params: int = DEFAULT_MAX_PARAMS


_POLICY: ContextVar[TrustPolicy] = ContextVar("sparsekit_trust_policy", default=TrustPolicy())


def current_policy() -> TrustPolicy:
    """The policy in force (the default allows no code, no remote code, 20 B parameters)."""
    return _POLICY.get()


def is_code_spec(spec: str) -> bool:
    """Whether a model source names code (``file.py:factory``, ``pkg.module:factory``), as opposed
    to a zoo name, ``hf:DIR``, ``torchvision:NAME`` or a checkpoint path."""
    return isinstance(spec, str) and ":" in spec and not spec.startswith(_DATA_PREFIXES)


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def code_ref(spec: str) -> CodeRef:
    """The :class:`CodeRef` of a code spec, with the file resolved and hashed as it is now."""
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        return CodeRef(str(path), attr, _file_digest(path))
    return CodeRef(target, attr)


@contextlib.contextmanager
def trust_sources(*specs: str | None, remote_code: bool | None = None, max_params: int | None = None) -> Iterator[TrustPolicy]:
    """Allow the code sources ``specs`` (and optionally remote code, a parameter limit) inside the block.

    Specs that name no code (zoo names, ``hf:DIR``, checkpoints, None) are ignored, so a caller can
    pass every model-naming argument it has. Policies nest: an inner block adds to the outer one.

    Raises:
        ResourceLimitError: ``max_params`` is not a positive integer.
    """
    policy = current_policy()
    refs = frozenset(code_ref(s) for s in specs if s and is_code_spec(s))
    if max_params is not None and (isinstance(max_params, bool) or not isinstance(max_params, int) or max_params <= 0):
        raise ResourceLimitError(f"--max-params must be a positive integer, got {max_params!r}", "e.g. --max-params 70000000000 for a 70 B model")
    policy = replace(
        policy,
        sources=policy.sources | refs,
        remote_code=policy.remote_code if remote_code is None else bool(remote_code),
        max_params=policy.max_params if max_params is None else max_params,
    )
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


def _one_line(text: str, limit: int = 120) -> str:
    """``text`` as one printable line for a message: a file may put newlines or terminal escapes in
    a source it records, and the error must stay one line (escaped as ``\\n``, ``\\x1b``), cut at ``limit``."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def require_allowed(spec: str, origin: str) -> None:
    """Refuse to run the code ``spec`` names unless the user named that same code in this invocation.

    Compared by resolved path, callable name and the file's current content hash (a module by its
    name), so a file that names ``os:system`` or a factory the user did not pass is never imported.

    Args:
        spec: the code source a file records (``file.py:factory`` or ``pkg.module:factory``).
        origin: what recorded it, for the message (``checkpoint 'x.pt'``).

    Raises:
        UntrustedSourceError: ``spec`` is not among the sources the user named.
    """
    ref = code_ref(spec)
    if ref in current_policy().sources:
        return
    shown = _one_line(spec)
    raise UntrustedSourceError(
        f"{origin} names the code source '{shown}', and a file's model source is never run unless you name it yourself",
        f"if it is a factory you wrote and trust, name it on the command line: --model-source '{shown}' (in Python: with sparsekit.trust_sources('{shown}')); otherwise do not use this file",
    )


def check_param_count(count: int, what: str) -> None:
    """Refuse a model of more parameters than the policy allows (counted before allocating them).

    Raises:
        ResourceLimitError: ``count`` exceeds :attr:`TrustPolicy.max_params`.
    """
    limit = current_policy().max_params
    if count > limit:
        raise ResourceLimitError(
            f"{what} would have {count:,} parameters, more than the limit of {limit:,}",
            "if the model really is that large, raise the limit with --max-params N",
        )

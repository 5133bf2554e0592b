"""Build the docstring corpus the MiniLM task evaluates and distils on, offline and deterministically.

Everything comes from source files on this machine, read with ``ast`` (nothing is imported, no
code runs):

- ``eval_large`` (2,000 pairs) and ``heldout`` (the rest, up to 1,000; CPython 3.11 leaves about
  540): Python standard-library docstrings,
  as ``stdlib_docstring_pairs.json`` builds them (query = the first line, document = the next 7
  non-empty lines joined), from docstrings that file does not use: no query, document or training
  paragraph of it appears in them. ``eval_large`` is the evaluation that can resolve about one
  point; ``heldout`` is a second split that no training or calibration touches.
- ``ood`` (400 pairs): the same construction on numpy's and torch's docstrings, packages that
  never feed training or calibration.
- ``broad_text``: paragraphs of the docstrings of other installed packages (transformers,
  scikit-learn, matplotlib, onnx, pydantic ...; never numpy or torch), for distillation and
  calibration, with every paragraph that equals or contains an evaluation text removed.

Splits are chosen by the sha256 of the query, so the same files give the same corpus. The file
records the Python and package versions it was read from.

Usage: python benchmarks/data/make_docstring_corpus.py [--out FILE] [--packages NAME ...]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import sysconfig
from importlib import metadata, util
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIN_HELDOUT = 400
"""The held-out split takes what the evaluation leaves, up to its size, and at least this many pairs."""
RESERVED = ("numpy", "torch")
"""Packages kept for out-of-distribution evaluation: never in the training corpus."""
BROAD = ("transformers", "sklearn", "matplotlib", "onnx", "pydantic", "scipy", "polygraphy", "onnxruntime", "rich", "requests", "huggingface_hub", "tqdm", "yaml", "fastapi", "starlette")
SKIP_DIRS = {"test", "tests", "testing", "site-packages", "__pycache__", "_vendor", "vendored", "externals"}
DIST = {"sklearn": "scikit-learn", "yaml": "PyYAML", "huggingface_hub": "huggingface-hub"}


def normal(text: str) -> str:
    """Whitespace collapsed to single spaces."""
    return " ".join(text.split())


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def source_files(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root`` outside test, vendored and tool folders, sorted."""
    return sorted(p for p in root.rglob("*.py") if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1]))


def docstrings(files: list[Path]) -> list[str]:
    """The cleaned docstrings of every module, class and function of ``files``, in file order."""
    out = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    out.append(doc)
    return out


def pair_of(doc: str) -> tuple[str, str] | None:
    """``(query, document)`` of a docstring, or None when it is too short to make a retrieval pair."""
    lines = doc.splitlines()
    query = lines[0].strip()
    rest = [line.strip() for line in lines[1:] if line.strip()][:7]
    document = " ".join(rest)
    if not 2 <= len(query.split()) <= 40 or len(document) < 40:
        return None
    return query, document


def paragraphs(doc: str) -> list[str]:
    """Blank-line separated paragraphs, whitespace collapsed, that read as prose (40-800 characters, no doctest)."""
    out = []
    for block in doc.split("\n\n"):
        text = normal(block)
        if 40 <= len(text) <= 800 and len(text.split()) >= 6 and ">>>" not in text and sum(c.isalpha() for c in text) > 0.6 * len(text):
            out.append(text)
    return out


def unique_pairs(docs: list[str]) -> list[tuple[str, str]]:
    seen_q, seen_d, out = set(), set(), []
    for doc in docs:
        pair = pair_of(doc)
        if pair and pair[0] not in seen_q and pair[1] not in seen_d:
            seen_q.add(pair[0])
            seen_d.add(pair[1])
            out.append(pair)
    return out


def package_root(name: str) -> Path | None:
    spec = util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def version_of(name: str) -> str | None:
    try:
        return metadata.version(DIST.get(name, name))
    except metadata.PackageNotFoundError:
        return None


def build(existing: dict, packages: list[str], eval_size: int = 2000, heldout_size: int = 1000, ood_size: int = 400, max_broad: int = 6000) -> dict:
    """The corpus (see the module docstring) given the fixed split ``existing`` (the pairs file)."""
    bad = sorted(set(packages) & set(RESERVED))
    if bad:
        raise SystemExit(f"error: {', '.join(bad)} are reserved for out-of-distribution evaluation and never go into the training corpus")
    used_queries = {normal(q) for q, _ in existing["eval"] + existing["calib"]}
    used_docs = {normal(d) for _, d in existing["eval"] + existing["calib"]}
    used_paragraphs = {normal(t) for t in existing["train_text"]}
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    fresh = []
    for q, d in unique_pairs(docstrings(source_files(stdlib))):
        if normal(q) in used_queries or normal(d) in used_docs:
            continue
        whole = normal(q + " " + d)
        if any(p in used_paragraphs for p in (normal(d), whole)) or any(t in whole for t in _prefixes(whole, used_paragraphs)):
            continue
        fresh.append((q, d))
    fresh.sort(key=lambda p: _key(p[0]))
    if len(fresh) < eval_size + MIN_HELDOUT:
        raise SystemExit(f"error: only {len(fresh)} unused standard-library pairs, {eval_size + MIN_HELDOUT} needed")
    eval_large, heldout = fresh[:eval_size], fresh[eval_size : eval_size + heldout_size]
    ood_docs = [doc for name in RESERVED if ood_size and (root := package_root(name)) for doc in docstrings(source_files(root))]
    ood = sorted(unique_pairs(ood_docs), key=lambda p: _key(p[0]))[:ood_size]
    evaluation = [normal(t) for pair in existing["eval"] + eval_large + heldout + ood for t in pair]
    eval_set = set(evaluation)
    broad, seen = [], set(used_paragraphs)
    for name in packages:
        root = package_root(name)
        if root is None:
            continue
        for doc in docstrings(source_files(root)):
            for text in paragraphs(doc):
                if text in seen or text in eval_set or any(text in e or e in text for e in _prefixes(text, eval_set)):
                    continue
                seen.add(text)
                broad.append(text)
    broad = sorted(broad, key=_key)[:max_broad]
    return {
        "source": "docstrings read with ast: CPython standard library (eval_large, heldout), numpy + torch (ood), other installed packages (broad_text)",
        "pair": "query = first docstring line; document = following non-empty lines (up to 7), joined",
        "versions": {"python": sys.version.split()[0], **{name: version_of(name) for name in [*packages, *RESERVED]}},
        "packages": packages,
        "eval_large": [list(p) for p in eval_large],
        "heldout": [list(p) for p in heldout],
        "ood": [list(p) for p in ood],
        "broad_text": broad,
    }


def _prefixes(text: str, corpus: set[str]) -> list[str]:
    """Members of ``corpus`` that could overlap ``text``: those sharing one of its 5-word windows
    (checked exactly by the caller). An index keeps this linear instead of all-pairs."""
    index = _INDEX.get(id(corpus))
    if index is None:
        index = {}
        for item in corpus:
            words = item.split()
            for i in range(0, max(len(words) - 4, 1), 5):
                index.setdefault(" ".join(words[i : i + 5]), []).append(item)
        _INDEX[id(corpus)] = index
    words = text.split()
    found = []
    for i in range(max(len(words) - 4, 1)):
        found.extend(index.get(" ".join(words[i : i + 5]), ()))
    return found


_INDEX: dict[int, dict[str, list[str]]] = {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=Path, default=HERE / "stdlib_docstring_pairs.json", help="the fixed split whose texts are excluded")
    ap.add_argument("--out", type=Path, default=HERE / "docstring_corpus.json")
    ap.add_argument("--packages", nargs="+", default=list(BROAD), help="packages whose docstrings form the broad training corpus (never numpy or torch)")
    ap.add_argument("--eval-size", type=int, default=2000)
    ap.add_argument("--heldout-size", type=int, default=1000)
    ap.add_argument("--ood-size", type=int, default=400)
    ap.add_argument("--max-broad", type=int, default=6000, help="at most this many training paragraphs (chosen by hash)")
    args = ap.parse_args(argv)
    existing = json.loads(args.pairs.read_text(encoding="utf-8"))
    corpus = build(existing, args.packages, args.eval_size, args.heldout_size, args.ood_size, args.max_broad)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(corpus, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    counts = {k: len(corpus[k]) for k in ("eval_large", "heldout", "ood", "broad_text")}
    print(f"wrote {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

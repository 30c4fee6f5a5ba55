"""WordNet 3.0 through nltk, read from Debian's files (no download).

Debian's ``wordnet-base`` and ``wordnet-sense-index`` put Princeton WordNet 3.0 under
``/usr/share/wordnet``. nltk expects ``<root>/corpora/wordnet/`` with ``<root>`` on
``nltk.data.path`` and a ``lexnames`` file that Debian does not ship, so we lay out
``<data_dir>/nltk_data/corpora/wordnet/`` with Debian's files plus the standard
lexicographer-file list (``man lexnames``). The files are *copied* (36 MB, once, refreshed
when Debian's change): nltk 3.10 refuses both symlinks that resolve outside the corpus
root and hard links (``st_nlink > 1``).
"""

from __future__ import annotations

import shutil
import warnings
from functools import cache
from pathlib import Path

from bench.errors import BenchError
from bench.fileio import atomic_write, write_text
from bench.paths import data_dir

DEBIAN_WORDNET = Path("/usr/share/wordnet")
APT_HINT = "apt-get install wordnet-base wordnet-sense-index"

# Files nltk's reader opens; index.sense is read at start-up (sense-key version maps).
REQUIRED = tuple(
    [f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")]
    + [f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")]
    + ["index.sense"]
)
OPTIONAL = ("cntlist.rev",)  # lemma frequency counts: only ``Lemma.count()`` reads it

# The 45 lexicographer files of WordNet 3.0: number, name, syntactic category (1 noun,
# 2 verb, 3 adjective, 4 adverb).
_LEXNAMES = (
    [("adj.all", 3), ("adj.pert", 3), ("adv.all", 4)]
    + [
        (f"noun.{x}", 1)
        for x in (
            "Tops act animal artifact attribute body cognition communication event feeling food "
            "group location motive object person phenomenon plant possession process quantity "
            "relation shape state substance time"
        ).split()
    ]
    + [
        (f"verb.{x}", 2)
        for x in (
            "body change cognition communication competition consumption contact creation "
            "emotion motion perception possession social stative weather"
        ).split()
    ]
    + [("adj.ppl", 3)]
)
LEXNAMES = "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(_LEXNAMES))


def nltk_root() -> Path:
    """The folder put on ``nltk.data.path`` (it holds ``corpora/wordnet/``)."""
    return data_dir() / "nltk_data"


def prepare_nltk_wordnet(source: str | Path = DEBIAN_WORDNET, root: str | Path | None = None) -> Path:
    """Lay out ``<root>/corpora/wordnet/`` over the WordNet files in ``source``; return ``root``.

    Raises ``BenchError`` (naming the apt command) when ``source`` lacks a required file.
    """
    source = Path(source)
    root = Path(root) if root is not None else nltk_root()
    missing = [name for name in REQUIRED if not (source / name).is_file()]
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise BenchError(f"WordNet 3.0 files missing in {source} ({shown}); install them with: {APT_HINT}")
    corpus = root / "corpora" / "wordnet"
    corpus.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED + OPTIONAL:
        if (source / name).is_file():
            _copy_if_changed(source / name, corpus / name)
    lexnames = corpus / "lexnames"
    if not lexnames.is_file() or lexnames.read_text(encoding="utf-8") != LEXNAMES:
        write_text(lexnames, LEXNAMES)
    return root


def _copy_if_changed(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` (atomically, keeping its time stamp) unless already there."""
    src = source.stat()
    if dest.is_file() and not dest.is_symlink():
        have = dest.stat()
        if have.st_nlink == 1 and (have.st_size, have.st_mtime_ns) == (src.st_size, src.st_mtime_ns):
            return
    dest.unlink(missing_ok=True)
    atomic_write(dest, lambda tmp: shutil.copy2(source, tmp))


@cache
def wordnet():
    """nltk's WordNet 3.0 corpus reader over Debian's files (loaded once, about 2.5 s)."""
    import nltk

    root = str(prepare_nltk_wordnet())
    if root not in nltk.data.path:
        nltk.data.path.insert(0, root)
    from nltk.corpus import wordnet as wn

    with warnings.catch_warnings():  # "multilingual functions are not available": not needed
        warnings.simplefilter("ignore", UserWarning)
        wn.ensure_loaded()
    if wn.get_version() != "3.0":
        raise BenchError(f"expected WordNet 3.0 in {DEBIAN_WORDNET}, found {wn.get_version()}; install: {APT_HINT}")
    return wn


def noun_synset(name: str):
    """The noun synset called ``name`` (``dog.n.01``), canonical even for an alias name.

    ``trumpet.n.01`` names the same synset as ``cornet.n.01``; ``.name()`` of the result is
    the canonical one. Raises ``BenchError`` for unknown or non-noun names.
    """
    from nltk.corpus.reader.wordnet import WordNetError

    wn = wordnet()
    parts = name.rsplit(".", 2)
    if len(parts) != 3 or not parts[2].isdigit() or not parts[0]:
        raise BenchError(f"{name!r} is not a synset name (expected lemma.n.NN, e.g. dog.n.01)")
    if parts[1] != "n":
        raise BenchError(f"synset {name!r} is not a noun (the hierarchy uses noun synsets: lemma.n.NN)")
    try:
        return wn.synset(name)
    except (WordNetError, ValueError):
        senses = wn.synsets(parts[0], "n")
        hint = f"; noun senses of {parts[0]!r}: " + ", ".join(s.name() for s in senses[:6]) if senses else ""
        raise BenchError(f"no WordNet synset {name!r}{hint}") from None

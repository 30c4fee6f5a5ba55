"""The clip art behind the offline dataset ``stamps``: which Tux Paint stamp shows which label.

The catalogue is explicit and was reviewed by eye (every file below was looked at): a
stamp is listed under a label only when it unmistakably shows that object. Left out on
purpose: toys and cartoon characters (teddy bears, Tux, the lion doll), animals that are
relatives rather than members of a label (bull for ``cow``, donkey for ``horse``, bass
guitars for ``guitar``), train wagons without an engine, and photos smaller than 40 px.
Where a stamp ships both as PNG and SVG with the same drawing, one of them is listed.

Paths are relative to the Debian package ``tuxpaint-stamps-default``
(``/usr/share/tuxpaint/stamps``); the labels and their WordNet synsets are in
``kg/labels/stamps.csv``. Tux Paint's ``.dat`` files (``noflip``, ``colorable``) are
ignored: horizontal mirroring is right for every stamp listed here.
"""

from __future__ import annotations

import csv
import hashlib
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from bench.errors import BenchError

STAMPS_PACKAGE = "tuxpaint-stamps-default"
STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
LABEL_TABLE = Path(__file__).resolve().parents[2] / "kg" / "labels" / "stamps.csv"

CATALOGUE: dict[str, tuple[str, ...]] = {
    # mammals
    "cat": ("animals/mammals/cats/kitten.svg", "seasonal/halloween/blackcat.png"),
    "lion": ("animals/mammals/cats/lion.png", "animals/mammals/cats/lion-2.png"),
    "tiger": ("animals/mammals/cats/tiger.png", "animals/mammals/cats/tiger_sumatran.png"),
    "dog": ("animals/mammals/dogs/dog.png", "animals/mammals/dogs/dingo.png"),
    "bear": ("animals/mammals/bears/bear.png", "animals/mammals/bears/european-bear.png"),
    "horse": ("animals/mammals/equines/horse.png",),
    "zebra": ("animals/mammals/equines/zebra.png", "animals/mammals/equines/zebra2.svg"),
    "cow": ("animals/mammals/bovines/cow.png", "animals/mammals/bovines/cow_white.png"),
    "sheep": (
        "animals/mammals/bovines/sheep.png",
        "animals/mammals/bovines/sheep_lamb.png",
        "animals/mammals/bovines/ram.png",
    ),
    "pig": ("animals/mammals/pig.png", "animals/mammals/pig_golden.png", "animals/mammals/pig_golden2.png"),
    "elephant": ("animals/mammals/elephant.png",),
    # birds
    "duck": ("animals/birds/duck.png", "animals/birds/drake.png"),
    "owl": ("animals/birds/owl.png",),
    "penguin": (
        "animals/birds/penguin.png",
        "animals/birds/little-penguin.png",
        "animals/birds/magellanic_penguin.png",
    ),
    "chicken": ("animals/birds/hen.png", "animals/birds/rooster.png", "animals/birds/chicken_profile.png"),
    # insects
    "butterfly": ("animals/insects/cartoon/butterfly.png", "animals/insects/cartoon/monarchbutterfly.svg"),
    "ladybug": ("animals/insects/cartoon/ladybug.png", "animals/insects/cartoon/ladybug-2.png"),
    # vehicles
    "aeroplane": (
        "vehicles/flight/planes/747.png",
        "vehicles/flight/planes/plane.svg",
        "vehicles/flight/planes/cartoon/plane.png",
        "military/vehicles/mustang.svg",
    ),
    "boat": (
        "vehicles/ship/sail_boat1.svg",
        "vehicles/ship/sail_boat2.svg",
        "vehicles/ship/cartoon/tugboat.png",
        "vehicles/ship/chineseJunk.png",
    ),
    "car": (
        "vehicles/auto/beetle.png",
        "vehicles/auto/sedan.png",
        "vehicles/auto/sportscar.svg",
        "vehicles/auto/sportscar2.png",
    ),
    "bus": (
        "vehicles/iso_bus.svg",
        "vehicles/masstransit/cartoon/double_decker_bus.png",
        "vehicles/masstransit/cartoon/schoolbus.svg",
        "vehicles/masstransit/green_korean_bus.png",
    ),
    "motorbike": ("vehicles/cycle/motorbike.svg",),
    "bicycle": ("vehicles/cycle/bluebike.svg",),
    "train": ("vehicles/locomotive/white_train.svg", "vehicles/locomotive/cartoon/toy_train.png"),
    # fruit
    "apple": ("food/fruit/cartoon/apple.png", "food/fruit/apple_red.png", "food/fruit/apple_green.png"),
    "banana": ("food/fruit/cartoon/banana.png",),
    "orange": ("food/fruit/cartoon/orange.png", "food/fruit/orange.png"),
    "lemon": ("food/fruit/cartoon/lemon.png", "food/fruit/lemon.png"),
    # musical instruments
    "guitar": (
        "hobbies/music/string/guitar2.png",
        "hobbies/music/string/guitar_classical.png",
        "hobbies/music/string/guitar_electric.png",
    ),
    "violin": ("hobbies/music/string/violin.png", "hobbies/music/string/violin2.svg"),
    # household
    "bottle": ("household/dishes/bottle.svg",),
}


def label_table(path: Path = LABEL_TABLE) -> dict[str, str]:
    """``label → synset`` from ``kg/labels/stamps.csv`` (``#`` lines are provenance comments)."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = csv.DictReader(line for line in fh if not line.lstrip().startswith("#"))
        return {row["label"].strip(): row["synset"].strip() for row in rows}


def require_stamps(root: Path | None = None) -> Path:
    """The clip-art folder, or a ``BenchError`` that says how to install it."""
    root = Path(root) if root is not None else STAMPS_DIR
    if not root.is_dir():
        raise BenchError(
            f"the clip art for the 'stamps' dataset is missing ({root}); "
            f"install it with `sudo apt-get install {STAMPS_PACKAGE}`"
        )
    missing = [p for files in CATALOGUE.values() for p in files if not (root / p).is_file()]
    if missing:
        raise BenchError(
            f"clip-art file {root / missing[0]} is missing ({len(missing)} of the catalogue); "
            f"reinstall it with `sudo apt-get install --reinstall {STAMPS_PACKAGE}`"
        )
    return root


def art_digest(root: Path) -> str:
    """SHA-256 over the catalogue and the bytes of every stamp file it lists."""
    h = hashlib.sha256()
    for label, files in CATALOGUE.items():
        for rel in files:
            h.update(f"{label}\0{rel}\0".encode())
            h.update((root / rel).read_bytes())
    return h.hexdigest()


def _rasterise(path: Path, max_side: int) -> Image.Image:
    if path.suffix == ".svg":
        import cairosvg

        # Some Tux Paint SVGs declare XML entities (Inkscape's ns_svg &c.), which the
        # default (defused) parser refuses; the files come from a Debian package.
        png = cairosvg.svg2png(url=str(path), output_width=max_side, unsafe=True)
        return Image.open(io.BytesIO(png)).convert("RGBA")
    return Image.open(path).convert("RGBA")


@lru_cache(maxsize=4)
def load_sprites(root: Path, max_side: int) -> dict[str, tuple[np.ndarray, ...]]:
    """Every stamp as an RGBA ``uint8`` array cropped to its opaque part.

    SVGs are rendered at ``max_side`` pixels wide; bitmaps larger than ``max_side`` are
    reduced so that their longest side is ``max_side``. Returns ``label → sprites`` in
    catalogue order.
    """
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for label, files in CATALOGUE.items():
        sprites = []
        for rel in files:
            im = _rasterise(root / rel, max_side)
            box = im.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
            if box is None:
                raise BenchError(f"clip-art file {root / rel} is fully transparent")
            im = im.crop(box)
            if max(im.size) > max_side:
                scale = max_side / max(im.size)
                im = im.resize(
                    (max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BILINEAR
                )
            sprites.append(np.asarray(im, dtype=np.uint8))
        out[label] = tuple(sprites)
    return out

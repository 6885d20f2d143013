"""Folders of image files in torchvision's ``ImageFolder`` layout: ``ROOT/<class>/*.png``.

Classes are the subfolders' names, sorted; a class's images are the image files (by suffix,
``reading.SUFFIXES``) at any depth below its folder, sorted by path; hidden files and folders
(a leading dot) are skipped, and so are files of other suffixes. A folder without subfolders is a
flat folder of unlabelled images (a run's inputs). Folders are only read: every problem is one
``XaiError`` naming the folder.
"""

from __future__ import annotations

from pathlib import Path

from xaicore.plugin import XaiError

from .reading import SUFFIXES

LISTED = ", ".join(SUFFIXES)


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUFFIXES and not path.name.startswith(".")


def images_below(folder: Path) -> list[Path]:
    """The image files at any depth below ``folder``, hidden ones and those in hidden folders
    skipped, sorted."""
    return sorted(p for p in folder.rglob("*") if is_image(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_images(root: Path, labels_required: bool = True) -> tuple[list[Path], list[str] | None]:
    """The image files of ``root`` and their classes (the names of their class folders), or
    None for a flat folder of images when ``labels_required`` is off."""
    if not root.is_dir():
        raise XaiError(f"no image folder at {root}")
    folders = subfolders(root)
    loose = sorted(p for p in root.iterdir() if is_image(p))
    if folders and loose:
        raise XaiError(f"{root} holds images ({loose[0].name}, ...) beside class subfolders "
                       f"({folders[0].name}/, ...); put every image in the subfolder of its class")
    if not folders:
        if not loose:
            raise XaiError(f"{root} holds no images ({LISTED})")
        if labels_required:
            raise XaiError(f"{root} holds images but no class subfolders; training reads "
                           f"{root}/<class>/*.png, one subfolder per class")
        return loose, None
    files: list[Path] = []
    labels: list[str] = []
    for folder in folders:
        found = images_below(folder)
        if not found:
            raise XaiError(f"class folder {folder} holds no images ({LISTED})")
        files += found
        labels += [folder.name] * len(found)
    return files, labels


def split_folders(root: Path, test: Path | None) -> tuple[Path, Path | None]:
    """The train folder and the test folder: ``test`` when given, else ``ROOT/train`` and
    ``ROOT/test`` when ROOT has both, else ROOT alone (a seeded split follows)."""
    if test is not None or not root.is_dir():
        return root, test
    names = {folder.name for folder in subfolders(root)}
    if not {"train", "test"} <= names:
        return root, None
    others = sorted(names - {"train", "test"})
    if others:
        raise XaiError(f"{root} has train/ and test/ beside {', '.join(f'{n}/' for n in others)}; "
                       f"give --dataset {root / 'train'} --test {root / 'test'} to read those two")
    return root / "train", root / "test"

"""MkDocs hook: publish the notebooks of ``notebooks/`` as pages of the site.

The notebooks live in ``notebooks/`` at the repository root (the tests execute them there, and
users open them there), outside ``docs/``, and MkDocs only reads files under ``docs_dir``.
Rather than a ``docs/notebooks`` symlink (which does not survive every checkout, archive or
copy, e.g. on Windows), this hook adds each ``notebooks/*.ipynb`` to the build's file list
under the site path ``notebooks/<name>.ipynb``. It runs before the mkdocs-jupyter plugin
(higher event priority), which then renders, and with ``execute: true`` executes, them like
any notebook under ``docs/``. ``mkdocs serve`` watches ``notebooks/`` (``watch:`` in
``mkdocs.yml``).
"""

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


@event_priority(100)  # before mkdocs-jupyter's on_files, which wraps the notebooks it finds
def on_files(files, config):
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        src_uri = f"notebooks/{path.name}"
        if files.get_file_from_path(src_uri) is None:
            files.append(
                File(
                    src_uri,
                    src_dir=str(ROOT),
                    dest_dir=config["site_dir"],
                    use_directory_urls=config["use_directory_urls"],
                )
            )
    return files

"""Build the documentation site from the notebooks.

    .venv/bin/python tools/docs.py [--quarto] [--check] [--only 06_evaluation ...]

The notebooks are committed without outputs, so the site needs them executed first:
  1. copy nbs/ to _nbs_executed/ and run every notebook there (figures become outputs);
  2. with --quarto (Quarto installed): `nbdev_docs --path _nbs_executed` builds the real site in _docs/;
     without it: nbdev's own processing (hidden cells removed, show_doc tables added) into _proc/,
     then each page is rendered to HTML with nbconvert into _docs_preview/ (a local preview of the site);
  3. --check opens every page in headless Chromium (Debian's chromium) and verifies that all images load.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXEC, PREVIEW = ROOT / "_nbs_executed", ROOT / "_docs_preview"


LABEL_CELLS = ("#| hide\nimport matplotlib as mpl",                 # an import in a cell of its own, as nbdev wants
               '#| hide\nmpl.rcParams["figure.hooks"] = ["pe_renal.core:label_figure"]')


def execute(nb_path: str) -> str:
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1:1] = [
        nbformat.v4.new_code_cell(c) for c in LABEL_CELLS
    ]  # hidden on the site: every figure says it is synthetic
    NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(Path(nb_path).parent)}}
    ).execute()
    nbformat.write(nb, nb_path)
    return Path(nb_path).name


def mixed_import_cells(nb_path: Path) -> list[str]:
    """Code cells that import something and also compute. nbdev's docs processing re-runs every cell with an import
    (to make show_doc work), so such a cell would re-run its computation. The notebook, its #| directives and each
    cell's syntax tree are read by nbdev itself, and the rule is its own (processors._do_eval)."""
    import ast
    from nbdev.process import NBProcessor
    from nbdev.processors import _ast_contains
    bad = []
    for n, cell in enumerate(NBProcessor(nb_path, procs=[], rm_directives=False).nb.cells):
        if cell.cell_type != "code" or "nbdev_export()" in cell.source:
            continue
        d = cell.directives_
        if d.keys() & {"export", "exports", "exporti", "exec_doc"} or d.get("eval:", [""])[0].lower() == "false":
            continue
        trees = cell.parsed_()
        if (
            trees
            and _ast_contains(trees, (ast.Import, ast.ImportFrom))
            and _ast_contains(trees, (ast.Expr, ast.Assign))
        ):
            first = next((l for l in cell.source.splitlines() if l.strip() and not l.startswith("#|")), "")
            bad.append(f"{Path(nb_path).name}, cell {n}: {first[:60]!r}")
    return bad


_LINK_ATTRS = re.compile(r'\[([^\]]*)\]\(([^)\s]*)\)\{([^}]*)\}')
_CALL_SELF = re.compile(r'\s*\*?Call self as a function\.\*?')   # fastcore's stand-in for a function with no docstring


def _markdown_as_quarto(md: str) -> str:
    """What Quarto does to nbdev's markdown and nbconvert does not: Pandoc link attributes
    ([source](url){target="_blank"
    style=...}) become HTML attributes, and the docstring that fastcore borrows from object.__call__ is not shown."""
    attrs = lambda a: " ".join(re.findall(r'[\w-]+="[^"]*"', a))
    return _CALL_SELF.sub("", _LINK_ATTRS.sub(lambda m: f'<a href="{m[2]}" {attrs(m[3])}>{m[1]}</a>', md))


def as_quarto_renders(nb):
    """A notebook processed by nbdev, changed to show what the Quarto site shows: the front matter (a raw YAML cell) as
    title and description, `#| echo/output/include: false` honoured and #| lines hidden, no In [n] prompts (set on the
    exporter), and markdown read as Quarto reads it."""
    import nbformat
    import yaml
    cells = []
    for c in nb.cells:
        if c.cell_type == "raw" and c.source.startswith("---"):
            fm = yaml.safe_load(c.source.split("---")[1]) or {}
            head = "\n\n".join(
                [f"# {fm['title']}"] * ("title" in fm) + [f"*{fm['description']}*"] * ("description" in fm)
            )
            if head:
                cells.append(nbformat.v4.new_markdown_cell(head))
            continue
        if c.cell_type == "markdown":
            c.source = _markdown_as_quarto(c.source)
        if c.cell_type == "code":
            d = dict(re.findall(r"^#\|\s*([\w-]+):\s*(\S+)\s*$", c.source, re.M))
            if d.get("include") == "false":
                continue
            if d.get("output") == "false":
                c.outputs = []
            c.source = "\n".join(l for l in c.source.splitlines() if not l.startswith("#|")).strip()
            if d.get("echo") == "false":
                c.metadata.setdefault("tags", []).append("remove_input")
            for o in c.outputs:
                if "text/markdown" in o.get("data", {}):
                    o.data["text/markdown"] = _markdown_as_quarto(o.data["text/markdown"])
        cells.append(c)
    nb.cells = cells
    return nb


def render(nb: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    cfg = Config({"TagRemovePreprocessor": {"enabled": True, "remove_input_tags": ["remove_input"]},
                  "HTMLExporter": {"exclude_input_prompt": True, "exclude_output_prompt": True}})
    exporter = HTMLExporter(template_name="lab", config=cfg)
    body, _ = exporter.from_notebook_node(as_quarto_renders(nbformat.read(nb, as_version=4)))
    body = re.sub(r'href="([0-9A-Za-z_]+)\.ipynb', r'href="\1.html', body)       # links between pages
    nav = " | ".join(f'<a href="{p.stem}.html">{p.stem}</a>' for p in sorted(nb.parent.glob("*.ipynb")))
    body = body.replace("</main>", f'<hr><nav style="padding:1em">{nav}</nav></main>', 1)
    out = PREVIEW / f"{nb.stem}.html"
    out.write_text(body, encoding="utf-8")
    return out


def check(pages):
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium not found: apt-get install chromium")
    bad = 0
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        page = b.new_page()
        for p in pages:
            page.goto(p.as_uri())
            page.wait_for_load_state("load")
            imgs = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            ok = all(imgs)
            bad += not ok
            print(f"  {p.name:<26} {len(imgs):>3} images, {'all rendered' if ok else f'{imgs.count(False)} BROKEN'}")
        b.close()
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quarto", action="store_true", help="build the real site with nbdev_docs (needs Quarto)")
    ap.add_argument("--check", action="store_true", help="check the pages in headless Chromium")
    ap.add_argument("--only", nargs="*", help="notebook names (without .ipynb) to build")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("PE_RENAL_QUIET", "1")
    if a.quarto and not shutil.which("quarto"):                          # before any notebook runs
        sys.exit("Quarto is not installed (https://quarto.org); run without --quarto for a local preview.")
    bad = [b for p in sorted((ROOT / "nbs").glob("*.ipynb")) for b in mixed_import_cells(p)]
    if bad:
        sys.exit(
            "Put these imports in a cell of their own (nbdev's docs processing re-runs every cell "
            "that imports):\n  " + "\n  ".join(bad)
        )
    shutil.rmtree(EXEC, ignore_errors=True)
    shutil.copytree(ROOT / "nbs", EXEC, symlinks=False, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    nbs = sorted(EXEC.glob("*.ipynb"))
    if a.only:
        nbs = [p for p in nbs if p.stem in a.only]
    for p in sorted(EXEC.glob("*.ipynb")):
        if p not in nbs:
            p.unlink()
    print(f"executing {len(nbs)} notebooks in {EXEC} ...", flush=True)
    with ProcessPoolExecutor(a.jobs) as ex:
        for name in ex.map(execute, map(str, nbs)):
            print(f"  {name}", flush=True)
    if a.quarto:
        subprocess.run([str(Path(sys.executable).with_name("nbdev_docs")), "--path", str(EXEC)], check=True, cwd=ROOT)
        print(f"site built in {ROOT / '_docs'}")
        return
    from nbdev.serve import proc_nbs
    proc = proc_nbs(path=str(EXEC), force=True, n_workers=0)
    PREVIEW.mkdir(exist_ok=True)
    pages = [render(p) for p in sorted(Path(proc).glob("*.ipynb"))]
    print(f"preview: {len(pages)} pages in {PREVIEW} (open {PREVIEW / 'index.html'})")
    if a.check and check(pages):
        sys.exit("some pages have broken images")


if __name__ == "__main__":
    main()

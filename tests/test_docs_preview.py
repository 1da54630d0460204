"""The docs preview shows what the Quarto site shows, and exporting leaves the install stamp's inputs alone."""
import importlib.util
import os
import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

ROOT = Path(__file__).resolve().parents[1]


def _docs():
    spec = importlib.util.spec_from_file_location("pe_renal_docs_tool", ROOT / "tools" / "docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _processed_notebook():
    "A page as nbdev's processing leaves it: front matter cell, a show_doc cell with its markdown output, a plain cell."
    doc = ('---\n\n[source](https://example.org/f.py#L3){target="_blank" style="float:right"}\n\n### f\n\n'
           '```python\ndef f()\n```\n\n*Call self as a function.*')
    show = new_code_cell("#| output: asis\n#| echo: false\nshow_doc(f)", execution_count=0,
                         outputs=[new_output("display_data", data={"text/markdown": doc, "text/plain": "<f>"})])
    return new_notebook(
        cells=[
            new_raw_cell("---\ndescription: One line about it\noutput-file: x.html\ntitle: A page\n---\n\n"),
            new_markdown_cell('See [the paper](https://example.org){target="_blank"}.'),
            show,
            new_code_cell("#| include: false\nsecret = 1"),
            new_code_cell("x = 1\nx", execution_count=3),
        ]
    )


def test_preview_renders_as_the_site_does(tmp_path):
    docs = _docs()
    nb_path = tmp_path / "page.ipynb"
    nbformat.write(_processed_notebook(), nb_path)
    docs.PREVIEW = tmp_path / "out"
    docs.PREVIEW.mkdir()
    html = docs.render(nb_path).read_text()
    text = re.sub(r"<[^>]+>", "", html)                                        # code is split into highlighting spans
    assert '<h1 id="A-page">A page' in html and "One line about it" in html
    assert "output-file" not in html and "title: A page" not in html           # no raw front matter
    links = {m[2]: m[1] for m in re.finditer(r'<a ([^>]*)>([^<]*)</a>', html)}  # text: attributes
    assert {'href="https://example.org/f.py#L3"', 'target="_blank"', 'style="float:right"'} <= set(
        links["source"].split(" ")
    )
    assert {'href="https://example.org"', 'target="_blank"'} <= set(
        links["the paper"].split(" ")
    ) and "{target=" not in html
    assert "Call self as a function" not in text and "show_doc(f)" not in text and "secret" not in text
    assert "In&nbsp;[" not in html and "#|" not in text
    assert "x = 1" in text                                                     # ordinary code is still shown


def test_preview_rewrite_keeps_real_docstrings():
    docs = _docs()
    assert docs._markdown_as_quarto("*Deep features of every image.*") == "*Deep features of every image.*"
    assert docs._markdown_as_quarto("[a](b)") == "[a](b)"                       # plain links untouched


def test_export_leaves_pyproject_alone():
    "nbdev's export calls add_init, which rewrites pyproject.toml unless settings.ini says update_pyproject = False."
    from nbdev.config import add_init, get_config, update_proj
    pyproj = ROOT / "pyproject.toml"
    before = pyproj.stat().st_mtime_ns
    os.utime(pyproj, ns=(before, before - 10**9))                                # one second older, to see any write
    try:
        old = pyproj.stat().st_mtime_ns
        add_init(get_config().lib_path)
        assert pyproj.stat().st_mtime_ns == old
        update_proj(ROOT)                                                        # positive control: this does write it
        assert pyproj.stat().st_mtime_ns != old
    finally:
        os.utime(pyproj, ns=(before, before))


def test_every_figure_on_the_site_says_it_is_synthetic(tmp_path):
    """The docs build executes each notebook with a hidden first cell that labels every pyplot figure; a figure without
    it fails."""
    import base64
    import io
    import numpy as np
    from PIL import Image
    docs = _docs()
    nb = new_notebook(cells=[new_markdown_cell("# A page"),
                             new_code_cell("import matplotlib.pyplot as plt"),
                             new_code_cell("fig, ax = plt.subplots(figsize=(3, 2)); ax.plot([0, 1]); plt.show()")])
    nbformat.write(nb, tmp_path / "page.ipynb")
    docs.execute(str(tmp_path / "page.ipynb"))
    cells = nbformat.read(tmp_path / "page.ipynb", as_version=4).cells
    assert all(c.source.startswith("#| hide") for c in cells[1:3])                  # hidden on the site
    assert "pe_renal.core:label_figure" in cells[2].source and docs.mixed_import_cells(tmp_path / "page.ipynb") == []
    pngs = [o.data["image/png"] for o in cells[4].outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(pngs[0]))).convert("RGB")).astype(int)
    dark_red = (img[..., 0] > 100) & (img[..., 1] < 60) & (img[..., 2] < 70)
    rows = np.flatnonzero(dark_red.any(axis=1))
    assert len(rows) and rows.max() < img.shape[0] * 0.2                     # the label, on top of the figure
    # negative control: the same figure without the hook has no such text
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    plain = np.asarray(Image.open(buf).convert("RGB")).astype(int)
    assert not ((plain[..., 0] > 100) & (plain[..., 1] < 60) & (plain[..., 2] < 70)).any()

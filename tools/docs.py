"""Build the documentation site `_docs/` from the notebooks, offline (no Quarto).

    python tools/docs.py                 # build _docs/
    python tools/docs.py --serve [PORT]  # build, then serve it on http://127.0.0.1:PORT/ (default 8000)

1. Every notebook under nbs/ runs top to bottom in a fresh kernel (cells flagged `#| slow` or `#| eval: false` are
   shown, not run). Executed copies are cached in _docs_build/executed/ under a hash of the notebook and of the
   library: an unchanged notebook is not run again.
2. nbdev processes the executed copies (`nbdev.serve.proc_nbs`, which needs no Quarto): `show_doc` rendered,
   hidden and exported cells dropped, backticked names linked to their pages.
3. The processed notebooks become Sphinx sources in _docs_build/src/: Quarto cell options become myst-nb tags, each
   `show_doc` becomes a heading with a cross-reference target, the signature and a parameter table, and every link
   to a page of the site becomes a cross-reference, so a broken one fails the build.
4. `sphinx-build -W` (a warning is an error) with myst-nb and furo, configured by docs/conf.py; _docs/ is replaced
   only when the build succeeds.
"""
import hashlib, inspect, importlib, os, re, shutil, subprocess, sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NBS, BUILD, OUT = ROOT / 'nbs', ROOT / '_docs_build', ROOT / '_docs'
EXECUTED, PROC, SRC = BUILD / 'executed', ROOT / '_proc', BUILD / 'src'
SITE = 'https://brainseg.github.io/brainseg/'   # doc_host + doc_baseurl in settings.ini: nbdev's links point there
SKIPPED = ('runs',)                              # papermill templates: run by grids, not pages of the site
# measured results, in the repository
MARKDOWN_PAGES = ('RESULTS.md', 'BENCHMARKS.md', 'BENCHMARKS-full.md', 'BENCHMARKS-cuda.md')
NOT_RUN = re.compile(r'^#\|\s*(slow|eval:\s*false)\s*$', re.M)
OPTION = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
LINK = re.compile(r'\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)(\{[^}]*\})?')
SHOW_DOC = re.compile(r'^show_doc\((.+?)(,.*)?\)\s*$')


def notebooks() -> list:
    "The notebooks of the site, relative to nbs/ (index.ipynb is the home page)."
    found = (p.relative_to(NBS) for p in NBS.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
    return sorted(p for p in found if p.parts[0] not in SKIPPED)


def library_hash() -> str:
    "One hash of everything the notebooks import from brainseg (code, weights, data files)."
    h = hashlib.sha1()
    for p in sorted((ROOT / 'brainseg').rglob('*')):
        if p.is_file() and '__pycache__' not in p.parts: h.update(str(p.relative_to(ROOT)).encode() + p.read_bytes())
    return h.hexdigest()


def execute(rel: Path, key: str) -> str:
    "Run nbs/`rel` in a fresh kernel (cwd: its folder) into the cache, unless the cached copy has this `key`."
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    src, dst = NBS / rel, EXECUTED / rel
    stamp = dst.with_suffix('.key')
    if dst.exists() and stamp.exists() and stamp.read_text() == key: return f'cached    {rel}'
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == 'code' and NOT_RUN.search(cell.source):
            cell.metadata.setdefault('tags', []).append('skip-execution')
    client = NotebookClient(nb, timeout=1200, kernel_name='python3', resources={'metadata': {'path': str(src.parent)}})
    try: client.execute()
    except CellExecutionError as e: raise RuntimeError(f"docs: notebook {src.relative_to(ROOT)} failed:\n{e}") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix('.tmp')
    nbformat.write(nb, tmp)
    tmp.replace(dst)
    stamp.write_text(key)
    return f'executed  {rel}'


def execute_all(workers: int = 2):
    "Execute every notebook of the site (cached), `workers` kernels at a time."
    lib = library_hash()
    keys = {rel: hashlib.sha1((lib + (NBS / rel).read_text()).encode()).hexdigest() for rel in notebooks()}
    with ProcessPoolExecutor(workers) as pool:
        for line in pool.map(execute, keys, keys.values()): print(line, flush=True)
    for p in EXECUTED.rglob('*.ipynb'):  # notebooks since removed from nbs/
        if p.relative_to(EXECUTED) not in keys:
            p.unlink()
            p.with_suffix('.key').unlink(missing_ok=True)


def nbdev_process():
    "nbdev's processing of the executed notebooks into _proc/ (`show_doc` rendered; no Quarto)."
    from nbdev.serve import proc_nbs
    shutil.rmtree(PROC, ignore_errors=True)
    proc_nbs(path=str(EXECUTED), n_workers=2, force=True)


# --- Sphinx sources -----------------------------------------------------------------------------------------------

def front_matter(nb) -> dict:
    "The title, description and output file nbdev put in the first raw cell."
    raw = next((c for c in nb.cells if c.cell_type == 'raw' and c.source.startswith('---')), None)
    if raw is None: return {}
    nb.cells.remove(raw)
    return yaml.safe_load(raw.source.strip().strip('-')) or {}


def page_name(rel: Path, meta: dict) -> str:
    "Sphinx document name: nbdev's output file (`labels` for 00_labels.ipynb), in the notebook's folder."
    return (rel.parent / Path(meta.get('output-file', rel.stem + '.html')).stem).as_posix()


def options(source: str) -> tuple:
    "Quarto cell options (`#| echo: false` -> {'echo': 'false'}) and the source without them."
    opts, lines = {}, source.splitlines()
    while lines and (m := OPTION.match(lines[0])):
        opts[m[1]] = m[2]
        lines.pop(0)
    return opts, '\n'.join(l for l in lines if not l.startswith('#|'))


def symbol(module: str, name: str):
    "The documented object `name` ('SliceViewer.render') of brainseg module `module`, or None."
    obj = importlib.import_module(f'brainseg.{module}')
    for part in name.split('.'):
        obj = getattr(obj, part, None)
    return obj


def param_table(obj) -> str:
    "A markdown table of `obj`'s parameters from their docments comments (type, default, details)."
    from fastcore.docments import docments
    try: docs = docments(obj, full=True)
    except (TypeError, ValueError): return ''
    cell = lambda v: '' if v is None else str(v).replace('|', r'\|').replace('\n', ' ')
    empty = inspect.Parameter.empty
    rows = []
    for name, d in docs.items():
        if name in ('self', 'cls'): continue
        anno = '' if d.anno in (empty, type(None)) else getattr(d.anno, '__name__', d.anno)  # NoneType: inferred
        if name == 'return':
            if anno or d.docment: rows.append(f"| **returns** | {cell(anno)} | | {cell(d.docment)} |")
            continue
        default = '' if d.default is empty else f"`{d.default!r}`"
        rows.append(f"| `{name}` | {cell(anno)} | {cell(default)} | {cell(d.docment)} |")
    if not rows: return ''
    return '| parameter | type | default | details |\n| --- | --- | --- | --- |\n' + '\n'.join(rows)


def show_doc_markdown(cell, page: str, targets: dict) -> str:
    "Markdown for a rendered `show_doc`: a target and heading, the signature, the docstring and a parameter table."
    out = next((o for o in cell.outputs if 'text/markdown' in o.get('data', {})), None)
    if out is None: raise RuntimeError(f"docs: {page}: show_doc cell without markdown output:\n{cell.source}")
    md = out['data']['text/markdown']
    md = '\n'.join(l for l in md.splitlines() if l.strip() != '---')  # a transition cannot open a section
    heading = re.search(r'^(#+) (.+)$', md, re.M)
    source = re.search(r'blob/[^/]+/brainseg/(\w+)\.py', md)
    if not heading or not source: raise RuntimeError(f"docs: {page}: unexpected show_doc output:\n{md}")
    name = heading[2].strip()
    label = targets[page, name]
    link = re.search(r'^\[source\]\(.*$', md, re.M)  # nbdev puts it above the heading: move it under
    if link: md = md.replace(link[0] + '\n', '', 1)
    md = md.replace(heading[0], f"({label})=\n{heading[1]} {name}" + (f"\n\n{link[0]}" if link else ''), 1)
    md = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r'\1', md)  # a class as a default: its name, as in the code
    obj = symbol(source[1], name)
    table = param_table(obj) if obj is not None and callable(obj) else ''
    return md + ('\n\n' + table if table else '')


def target_label(page: str, name: str, targets: dict) -> str:
    "A unique cross-reference label for symbol `name` on `page` (Sphinx labels ignore case: Label, label)."
    base = re.sub(r'[^a-z0-9_.-]', '-', f"{page.replace('/', '.')}.{name}".lower())
    taken = {l for (p, n), l in targets.items()}
    label, k = base, 1
    while label in taken: label, k = f"{base}-{k + 1}", k + 1
    targets[page, name] = label
    return label


def collect_targets(procs: dict) -> dict:
    "(page, symbol) -> label of every `show_doc` of the site, in page order."
    targets = {}
    for page, nb in procs.items():
        for cell in nb.cells:
            if cell.cell_type == 'code' and SHOW_DOC.match(options(cell.source)[1].strip()):
                out = next((o for o in cell.outputs if 'text/markdown' in o.get('data', {})), {})
                m = re.search(r'^#+ (.+)$', out.get('data', {}).get('text/markdown', ''), re.M)
                if m: target_label(page, m[1].strip(), targets)
    return targets


def resolve_links(md: str, page: str, pages: set, targets: dict) -> str:
    "Links to pages of the site (nbdev's absolute ones, or `name.html#anchor`) become cross-references."
    def one(m):
        text, url = m[1], m[2]
        plain = f"[{text}]({url})"  # pandoc attributes ({target="_blank"}) dropped
        path, _, anchor = url.removeprefix(SITE).partition('#')
        if re.match(r'^[a-z]+:', path) or not path.endswith('.html'): return plain  # another site, a file, #anchor
        target = path[:-5] if url.startswith(SITE) else os.path.normpath(Path(page).parent / path[:-5])
        if target not in pages: raise RuntimeError(f"docs: {page}: link to {url!r}: no page {target!r} in the site")
        if not anchor: return f"[{text}]({rel_doc(page, target)})"
        on_page = {n: l for (p, n), l in targets.items() if p == target}
        label = None
        name = re.sub(r'^brainseg\.\w+\.', '', text.strip('`'))
        for name in prefixes(name) + prefixes(anchor):  # a method without its own show_doc: its class
            label = on_page.get(name) or next((l for n, l in on_page.items() if n.lower() == name.lower()), None)
            if label: break
        if label is None: raise RuntimeError(f"docs: {page}: link to {url!r}: no symbol {anchor!r} on page {target!r}")
        return f"[{text}](#{label})"
    return LINK.sub(one, md)


def prefixes(name: str) -> list:
    "'A.b.c' -> ['A.b.c', 'A.b', 'A']."
    parts = name.split('.')
    return ['.'.join(parts[:k]) for k in range(len(parts), 0, -1)]


def rel_doc(page: str, target: str) -> str:
    "A link from document `page` to document `target` that MyST resolves (and checks)."
    return os.path.relpath(target, Path(page).parent.as_posix() or '.') + '.ipynb'


def sphinx_notebook(nb, page: str, meta: dict, pages: set, targets: dict):
    "A processed notebook made ready for myst-nb: title cell, tags for Quarto options, show_doc as markdown."
    cells = []
    title = meta.get('title') or page
    lead = meta.get('description', '')
    cells.append(nbformat.v4.new_markdown_cell(f"# {title}" + (f"\n\n{lead}" if lead else '')))
    for cell in nb.cells:
        if cell.cell_type == 'markdown':
            if cell.source.startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            cell.source = resolve_links(cell.source, page, pages, targets)
            cells.append(cell)
            continue
        if cell.cell_type != 'code': continue
        opts, code = options(cell.source)
        if SHOW_DOC.match(code.strip()):
            md = show_doc_markdown(cell, page, targets)
            cells.append(nbformat.v4.new_markdown_cell(resolve_links(md, page, pages, targets)))
            continue
        tags = cell.metadata.setdefault('tags', [])
        tags[:] = [t for t in tags if t != 'skip-execution']
        if opts.get('include') == 'false': continue
        if opts.get('echo') == 'false': tags.append('remove-input')
        if opts.get('output') == 'false': tags.append('remove-output')
        for out in cell.get('outputs', []):  # markdown outputs (tables, config docs) may link to pages too
            if 'text/markdown' in out.get('data', {}):
                out['data']['text/markdown'] = resolve_links(out['data']['text/markdown'], page, pages, targets)
        cell.source = code
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop('widgets', None)  # the site shows each widget's PNG fallback, no widget JavaScript
    return nb


def markdown_pages() -> list:
    "Markdown files of the repository shown as pages (results, benchmarks), with the local files they link to."
    pages = []
    for name in MARKDOWN_PAGES:
        text = (ROOT / name).read_text()
        write_if_changed(SRC / name, text)
        for m in LINK.finditer(text):
            linked = ROOT / m[2]
            if not re.match(r'^[a-z]+:', m[2]) and linked.is_file() and linked.suffix != '.md':
                (SRC / m[2]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(linked, SRC / m[2])
        pages.append(Path(name).stem)
    return pages


def toctree(caption: str, pages: list) -> str:
    return f"```{{toctree}}\n:hidden:\n:caption: {caption}\n\n" + '\n'.join(pages) + "\n```"


def sphinx_sources():
    "Sphinx sources in _docs_build/src/ from _proc/: one page per notebook; the home page carries the navigation."
    procs, metas = {}, {}
    for rel in notebooks():
        nb = nbformat.read(PROC / rel, as_version=4)
        meta = front_matter(nb)
        page = page_name(rel, meta)
        procs[page], metas[page] = nb, meta
    results = markdown_pages()
    pages, targets = set(procs) | set(results), collect_targets(procs)
    wanted = set()
    for page, nb in procs.items():
        nb = sphinx_notebook(nb, page, metas[page], pages, targets)
        if page == 'index':
            groups = {'Tutorials': [p for p in procs if p.startswith('tutorials/')],
                      'Results': results,
                      'API': [p for p in procs if '/' not in p and p != 'index']}
            nb.cells.append(nbformat.v4.new_markdown_cell('\n\n'.join(toctree(k, v) for k, v in groups.items())))
        write_if_changed(SRC / f'{page}.ipynb', nbformat.writes(nb))
        wanted.add(SRC / f'{page}.ipynb')
    for p in SRC.rglob('*.ipynb'):
        if p not in wanted: p.unlink()


def write_if_changed(path: Path, text: str):
    "Write `text` unless the file already holds it (Sphinx then rebuilds only the pages that changed)."
    if path.exists() and path.read_text() == text: return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp')
    tmp.write_text(text)
    tmp.replace(path)


def sphinx_build():
    "sphinx-build with warnings as errors (in _docs_build/html, kept for incremental builds), then _docs/ replaced."
    html = BUILD / 'html'   # myst-nb writes beside it (_docs_build/jupyter_execute)
    cmd = [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html', '-c', str(ROOT / 'docs'),
           '-d', str(BUILD / 'doctrees'), str(SRC), str(html)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    tmp, old = OUT.with_name('_docs.tmp'), OUT.with_name('_docs.old')
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(html, tmp, ignore=shutil.ignore_patterns('.buildinfo', '.doctrees'))
    if OUT.exists(): OUT.rename(old)
    tmp.rename(OUT)
    shutil.rmtree(old, ignore_errors=True)


def build():
    execute_all()
    nbdev_process()
    sphinx_sources()
    sphinx_build()
    print(f"docs: built {OUT.relative_to(ROOT)}/index.html")


def serve(port: int = 8000):
    "Serve _docs/ on 127.0.0.1 only."
    print(f"docs: serving http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
    subprocess.run([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1', '--directory', str(OUT)])


if __name__ == '__main__':
    args = sys.argv[1:]
    try: build()
    except (RuntimeError, subprocess.CalledProcessError) as e: sys.exit(str(e))
    if args[:1] == ['--serve']: serve(int(args[1]) if len(args) > 1 else 8000)

"""Build README.md from index.ipynb (offline; Quarto is not needed). `--check` fails if README.md is stale."""
import sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parent.parent

def render(nb) -> str:
    "Markdown of a notebook: markdown cells as they are, code cells fenced, text outputs fenced; hidden cells dropped."
    parts = ["<!-- Generated from index.ipynb by tools/readme.py: edit the notebook, then run `make readme`. -->"]
    for cell in nb.cells:
        src = cell.source.strip()
        if cell.cell_type == 'markdown':
            parts.append(src)
            continue
        lines = src.splitlines()
        if any(l.strip() in ('#| hide', '#|hide') for l in lines): continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        if code: parts.append(f"```python\n{code}\n```")
        for out in cell.get('outputs', []):
            text = out.get('text') or out.get('data', {}).get('text/plain')
            if text: parts.append("```\n" + (''.join(text) if isinstance(text, list) else text).rstrip() + "\n```")
    return '\n\n'.join(parts) + '\n'

def main(argv):
    readme = ROOT / 'README.md'
    text = render(nbformat.read(ROOT / 'index.ipynb', as_version=4))
    if '--check' in argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("FAIL: README.md is not generated from index.ipynb; run `make readme` and commit")
        return
    readme.write_text(text)

if __name__ == '__main__': main(sys.argv[1:])

# Sphinx configuration of the documentation site; `make docs` (tools/docs.py) writes the sources and builds _docs/.
from configparser import ConfigParser
from pathlib import Path

_settings = ConfigParser()
_settings.read(Path(__file__).resolve().parent.parent / 'settings.ini')
_s = _settings['DEFAULT']

project = _s['title']
author = _s['author']
copyright = _s['copyright']
release = version = _s['version']

extensions = ['myst_nb', 'sphinx-mathjax-offline']   # MathJax from the package's own copy, not from a CDN
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence']
suppress_warnings = ['myst.header']                  # nbdev's symbol headings are ### under a page's # title

# Notebooks arrive executed (tools/docs.py caches that): myst-nb only renders them.
nb_execution_mode = 'off'
nb_render_markdown_format = 'myst'                   # markdown outputs (config tables) may hold tables and links
nb_merge_streams = True
nb_ipywidgets_js = {}                                # no widget JavaScript from a CDN: widgets show their PNG
nb_mime_priority_overrides = [('html', 'application/vnd.jupyter.widget-view+json', None),
                              ('html', 'application/vnd.jupyter.widget-state+json', None)]

html_theme = 'furo'
html_title = f"{project} {version}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {'navigation_with_keys': True}
exclude_patterns = ['**.ipynb_checkpoints']

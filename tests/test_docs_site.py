"""The documentation site in a real browser: `_docs/` served on 127.0.0.1, opened in Debian's headless Chromium.

Uses the site `make docs` built (`make test` builds it first); builds it when there is none. Needs /usr/bin/chromium
as tests/test_browser.py does. Screenshots go to test-output/docs/ (or $BRAINSEG_TEST_OUTPUT/docs/)."""
import re, shutil, subprocess, sys, time, urllib.error, urllib.parse, urllib.request
from pathlib import Path
import pytest
from brainseg.viewer import free_port
from test_browser import OUT as BROWSER_OUT, open_chromium

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_docs'
OUT = BROWSER_OUT.parent / 'docs'
PAGES = {'home': 'index.html', 'api': 'viewer.html', 'tutorial': 'tutorials/cascade.html', 'math': 'adversarial.html'}


@pytest.fixture(scope='module')
def site():
    "The built site, served by `tools/docs.py --serve`'s server (http.server on 127.0.0.1)."
    if not (SITE / 'index.html').exists(): subprocess.run([sys.executable, 'tools/docs.py'], cwd=ROOT, check=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1', '--directory',
                             str(SITE)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}/'
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError: time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def status(url: str) -> int:
    try: return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e: return e.code


def ids_of(url: str) -> set:
    return set(re.findall(r'\sid="([^"]+)"', urllib.request.urlopen(url, timeout=10).read().decode()))


def test_site_in_chromium(site, tmp_path):
    from playwright.sync_api import sync_playwright
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    with sync_playwright() as p:
        browser, page, errors, outside = open_chromium(p, tmp_path / 'profile', 1400, 1000)
        checked = {}
        for name, path in PAGES.items():
            page.goto(site + path, wait_until='load')
            page.wait_for_load_state('networkidle')
            assert page.title() and '404' not in page.title(), (path, page.title())
            images = page.eval_on_selector_all('img', 'els => els.map(e => [e.currentSrc, e.complete, e.naturalWidth])')
            broken = [src for src, complete, width in images if not (complete and width > 0)]
            assert not broken, f"{path}: images that did not load: {broken}"
            links = page.eval_on_selector_all('a[href]', 'els => els.map(e => e.href)')
            internal = {l for l in links if urllib.parse.urlsplit(l).hostname == '127.0.0.1'}
            assert internal, f"{path}: no internal links"
            for link in internal:
                target, _, anchor = link.partition('#')
                if target not in checked:
                    code = status(target)
                    page_ids = ids_of(target) if code == 200 and target.endswith(('.html', '/')) else set()
                    checked[target] = (code, page_ids)
                code, ids = checked[target]
                assert code == 200, f"{path}: link {link} answers HTTP {code}"
                assert not anchor or target.endswith(('.png', '.csv')) or urllib.parse.unquote(anchor) in ids, \
                    f"{path}: link {link}: no element with id {anchor!r} on {target}"
            if name == 'math': page.wait_for_selector('mjx-container', timeout=20000)  # MathJax typeset, offline
            if name == 'api':
                assert page.locator('#viewer-sliceviewer h3').inner_text().startswith('SliceViewer')
                assert page.locator('table').count() > 3, "API page without parameter tables"
                assert len(images) >= 5, f"API page with {len(images)} images: the viewers' pictures are missing"
            page.screenshot(path=OUT / f'{name}.png', full_page=False)
        page.goto(site + 'search.html?q=compare_viewer', wait_until='load')
        page.wait_for_selector('#search-results ul.search li a', timeout=30000)
        hits = page.eval_on_selector_all('#search-results ul.search li a', 'els => els.map(e => e.href)')
        page.screenshot(path=OUT / 'search.png')
        browser.close()
    assert any('/viewer.html' in h for h in hits), f"search for compare_viewer did not find the viewer page: {hits}"
    assert not errors, errors
    assert not outside, f"requests that left 127.0.0.1: {outside}"
    assert len(checked) > 20, f"only {len(checked)} internal pages linked"


def test_a_broken_link_fails_the_build(tmp_path):
    "A link to a page or symbol the site lacks stops tools/docs.py; one MyST cannot resolve stops sphinx-build -W."
    sys.path.insert(0, str(ROOT / 'tools'))
    import docs
    site = 'https://brainseg.github.io/brainseg/'
    targets = {('viewer', 'Panel'): 'p'}
    link = docs.resolve_links(f'[`Panel`]({site}viewer.html#panel)', 'tutorials/x', {'viewer'}, targets)
    assert link == '[`Panel`](#p)'
    with pytest.raises(RuntimeError, match="no symbol 'nope' on page 'viewer'"):
        docs.resolve_links(f'[`nope`]({site}viewer.html#nope)', 'index', {'viewer'}, targets)
    with pytest.raises(RuntimeError, match="no page 'tutorials/gone' in the site"):
        docs.resolve_links('[gone](gone.html)', 'tutorials/x', {'viewer'}, {})
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'index.md').write_text('# Home\n\nsee [the viewer](#viewer-nope)\n')
    run = subprocess.run([sys.executable, '-m', 'sphinx', '-W', '-q', '-c', str(ROOT / 'docs'), str(tmp_path / 'src'),
                          str(tmp_path / 'html')], capture_output=True, text=True)
    assert run.returncode != 0 and "cross-reference target not found: 'viewer-nope'" in run.stderr, run.stderr

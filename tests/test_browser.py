"""`brainseg view` in a real browser: Debian's headless Chromium, driven by Playwright, on the Voilà app at 127.0.0.1.

Needs /usr/bin/chromium (Debian package `chromium`; `.ci/run` installs it). Without it the test is skipped, unless
BRAINSEG_REQUIRE_BROWSER=1 (as in CI), where it fails. Screenshots go to test-output/browser/ (or
$BRAINSEG_TEST_OUTPUT/browser/)."""
import json, os, re, shutil, subprocess, sys, time, urllib.parse, urllib.request
from pathlib import Path
import numpy as np
import pytest
from brainseg.infer import write_result
from brainseg.io import save_nifti, write_mrbrains_subject
from brainseg.phantom import make_phantom
from brainseg.viewer import free_port

CHROMIUM = os.environ.get('BRAINSEG_CHROMIUM', '/usr/bin/chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--disable-quic']
OUT = Path(os.environ.get('BRAINSEG_TEST_OUTPUT', Path(__file__).parents[1] / 'test-output')) / 'browser'

if not Path(CHROMIUM).is_file():
    if os.environ.get('BRAINSEG_REQUIRE_BROWSER') == '1':
        raise RuntimeError(f"browser tests required but no Chromium at {CHROMIUM}: apt-get install chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

@pytest.fixture(scope='module')
def app(tmp_path_factory):
    "`brainseg view` of a results folder (2 subjects, 2 runs; unet's prediction of phantom1 on a wrong grid)."
    folder = tmp_path_factory.mktemp('results')
    subjects = [make_phantom(k) for k in range(2)]
    for s in subjects: write_mrbrains_subject(s, folder / 'data')
    for config, shift in (('unet', 1), ('vnet', 3)):
        run = folder / f'{config}-0a1b'
        run.mkdir()
        (run / 'params.json').write_text(json.dumps({'config': config}))
        for s in subjects: write_result(np.roll(s.labels, shift, axis=0), s, run / 'predictions')
    s1 = subjects[1]
    save_nifti(s1.labels[:, :, :8], s1.affine, folder / 'unet-0a1b' / 'predictions' / s1.id / 'result.nii.gz')
    port = free_port()
    proc = subprocess.Popen([sys.executable, '-m', 'brainseg.cli', 'view', str(folder), '--port', str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = proc.stdout.readline()
    url = re.search(r'http://127\.0\.0\.1:\d+/', first)
    assert url, f"brainseg view printed no address: {first!r}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url.group(0), timeout=2)
            break
        except OSError: time.sleep(0.5)
    yield url.group(0)
    proc.terminate()
    proc.wait(10)

def open_chromium(p, profile, width: int, height: int):
    """Debian's Chromium with a fresh profile and one page: (browser, page, errors, outside). Console errors (and
    ipywidgets' "Failed to load model class") go to `errors`; a request not to 127.0.0.1 is aborted and listed in
    `outside`."""
    errors, outside = [], []
    browser = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=FLAGS,
                                                   viewport={'width': width, 'height': height})
    def route(r):
        url = urllib.parse.urlsplit(r.request.url)
        if url.hostname == '127.0.0.1' or url.scheme in ('data', 'blob'): return r.continue_()
        outside.append(r.request.url)
        return r.abort()
    browser.route('**/*', route)
    page = browser.new_page()
    page.on('console', lambda m: errors.append(f'{page.url}: {m.text}') if m.type == 'error'
            or 'Failed to load model class' in m.text else None)
    page.on('pageerror', lambda e: errors.append(f'{page.url}: {e}'))
    return browser, page, errors, outside


def test_viewer_in_chromium(app, tmp_path):
    from playwright.sync_api import sync_playwright
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    with sync_playwright() as p:
        browser, page, errors, outside = open_chromium(p, tmp_path / 'profile', 1500, 1100)
        page.goto(app)
        image = page.locator('.brainseg-viewer img.brainseg-image').nth(1)  # the first prediction panel
        image.wait_for(timeout=120_000)
        page.wait_for_function("() => [...document.querySelectorAll('img.brainseg-image')].length >= 3 && "
                               "[...document.querySelectorAll('img.brainseg-image')].every(i => i.naturalWidth > 0)")
        page.screenshot(path=OUT / '1-opened.png', full_page=True)

        def changes(action, name):
            "Do `action`, wait until the panel's image is replaced and loaded, screenshot."
            before = image.get_attribute('src')
            action()
            page.wait_for_function("([el, src]) => el.src !== src && el.complete && el.naturalWidth > 0",
                                   arg=[image.element_handle(), before], timeout=30_000)
            page.screenshot(path=OUT / f'{name}.png', full_page=True)

        readout = page.locator('.brainseg-z .widget-readout')
        def move_slider():
            readout.click()
            page.keyboard.press('Control+A')
            page.keyboard.type('3')
            page.keyboard.press('Enter')
        changes(move_slider, '2-slider')
        assert readout.inner_text().strip() == '3'
        changes(lambda: page.locator('.brainseg-modality select').select_option('FLAIR'), '3-dropdown')
        changes(lambda: page.locator('.brainseg-toggle-C input[type=checkbox]').click(), '4-toggle')
        # a prediction on the wrong grid: a clear message in the page, no traceback, and no viewer
        page.locator('.brainseg-subject select').select_option('phantom1')
        page.locator('.brainseg-error').wait_for(timeout=30_000)
        message = page.locator('.brainseg-error').inner_text()
        page.screenshot(path=OUT / '5-bad-prediction.png', full_page=True)
        assert 'prediction has shape (64, 64, 8)' in message and 'unet-0a1b' in message
        assert 'Traceback' not in page.content()
        browser.close()
    assert not errors, f"browser console errors: {errors}"
    assert not outside, f"requests that would leave 127.0.0.1: {outside}"
    assert len(list(OUT.glob('*.png'))) == 5

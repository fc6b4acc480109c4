"""The docs site in a real browser: serve _docs/ on 127.0.0.1, drive headless Chromium through the home page, every
tutorial and every module page. Build the site first (`bash scripts/docs.sh`; scripts/test.sh does, and sets
AXOLOTL_NB_REQUIRE_SITE=1 so a missing site fails instead of skipping). Needs `chromium` and `chromium-driver` (apt)."""
import functools, http.server, json, os, shutil, threading, urllib.error, urllib.parse, urllib.request
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS, STAGED = ROOT/'_docs', ROOT/'_site'/'pages'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
CHROMEDRIVER = shutil.which('chromedriver')

if not (DOCS/'index.html').exists() and not os.environ.get('AXOLOTL_NB_REQUIRE_SITE'):
    pytest.skip("no site in _docs/: build it with `bash scripts/docs.sh`", allow_module_level=True)
if not os.environ.get('AXOLOTL_NB_REQUIRE_SITE'): pytest.importorskip('selenium')
from selenium import webdriver  # noqa: E402  (after the skip: selenium is optional outside CI)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

def nav_pages() -> list[tuple[str, str]]:
    "(section, page.html) for every page in the sidebar, in order."
    nav = yaml.safe_load((ROOT/'_site'/'mkdocs.yml').read_text())['nav']
    out = []
    for entry in nav:
        (sec, v), = entry.items()
        for item in (v if isinstance(v, list) else [{sec: v}]):
            (_, page), = item.items()
            out.append((sec, page.replace('.ipynb', '.html').replace('.md', '.html')))
    return out

class _Handler(http.server.SimpleHTTPRequestHandler):
    missing: list[str] = []
    def log_message(self, *a): pass
    def send_error(self, code, *a, **kw):
        if code == 404: self.missing.append(self.path)
        super().send_error(code, *a, **kw)

@pytest.fixture(scope='module')
def site():
    "Base URL of _docs/ served on localhost; the list of 404ed paths fills as pages load."
    assert (DOCS/'index.html').exists(), "no site in _docs/: run `bash scripts/docs.sh`"
    _Handler.missing = []
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Handler, directory=str(DOCS)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", _Handler.missing
    srv.shutdown()

@pytest.fixture(scope='module')
def browser():
    assert CHROMIUM and CHROMEDRIVER, "apt-get install -y chromium chromium-driver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,1000'):
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    d.set_page_load_timeout(60)
    yield d
    d.quit()

def load(browser, url:str) -> list[str]:
    "Open `url`, wait for it to settle; the JavaScript console errors it logged."
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script('return document.readyState') == 'complete')
    browser.execute_script('return new Promise(r => setTimeout(r, 300))')
    return [f"{url}: {e['message']}" for e in browser.get_log('browser') if e['level'] == 'SEVERE']

def each_page(browser, base:str):
    "Load every sidebar page in turn: yields (page, the console errors it logged) while it is open in `browser`."
    for _, page in nav_pages(): yield page, load(browser, base + page)

def outputs_expected(page:str) -> int:
    "How many code cells of the page must show output, counted from nbdev's processed notebook (not from the page)."
    staged = json.loads((STAGED/page.replace('.html', '.ipynb')).read_text())
    cache = Path(os.environ.get('AXOLOTL_NB_DOCS_CACHE', ROOT/'_site'/'proc'))  # as scripts/docs.py
    proc = json.loads((cache/staged['metadata']['axolotl_nb']['source']).read_text())
    n = 0
    for c in proc['cells']:
        outs = c.get('outputs') or []
        if c['cell_type'] != 'code' or not outs: continue
        src = ''.join(c['source'])
        if '#| output: false' in src: continue
        if '#| echo: false' in src and all('text/markdown' in o.get('data', {}) for o in outs): continue  # API docs
        n += 1
    return n

JS_CELLS = """return [...document.querySelectorAll('div.jp-CodeCell[id^="cell-id="]')].map(c => {
  const outs = [...c.querySelectorAll('.jp-OutputArea-output')];
  const imgs = [...c.querySelectorAll('.jp-OutputArea-output img')];
  return {text: outs.map(o => o.innerText.trim()).join(''), n: outs.length,
          imgs: imgs.map(i => [i.naturalWidth, i.naturalHeight])};
});"""

def test_site_pages(site, browser):
    "Every sidebar page loads without a console error; every code cell output of its notebook is rendered."
    errors, empty = [], []
    for page, errs in each_page(browser, site[0]):
        errors += errs
        if not page.endswith(('.html',)) or not (STAGED/page.replace('.html', '.ipynb')).exists(): continue
        got = browser.execute_script(JS_CELLS)
        shown = [g for g in got if g['text'] or any(wd and ht for wd, ht in g['imgs'])]
        if len(shown) != (want := outputs_expected(page)):
            empty.append(f"{page}: {len(shown)} code cells show output, the notebook has {want}")
        empty += [f"{page}: image of size {wd}x{ht}" for g in got for wd, ht in g['imgs'] if not (wd and ht)]
    assert not errors, '\n'.join(errors)
    assert not empty, "outputs missing on the page:\n" + '\n'.join(empty)
    pages = nav_pages()
    assert {s for s, _ in pages} >= {'Home', 'Tutorials', 'Benchmarks'} and len(pages) >= 15, pages

def test_no_broken_internal_links(site, browser):
    "Every internal link and image on every page resolves (no 404), including what the browser itself fetched."
    base, missing = site
    hrefs = set()
    for _ in each_page(browser, base):
        hrefs |= set(browser.execute_script(
            "return [...document.querySelectorAll('a[href], img[src]')].map(e => e.href || e.src)"))
    internal = {urllib.parse.urldefrag(h)[0] for h in hrefs if h.startswith(base)}
    for url in sorted(internal):
        try: urllib.request.urlopen(url, timeout=10).close()
        except urllib.error.HTTPError as e: missing.append(f"{url} ({e.code})")
    assert not missing, "404 for:\n" + '\n'.join(sorted(set(missing)))
    assert len(internal) > 20, internal

def page_images(browser, base, page) -> list[tuple[int, int]]:
    load(browser, base + page)
    js = ("return [...document.querySelectorAll('.jp-OutputArea-output img')]"
          ".map(i => [i.naturalWidth, i.naturalHeight])")
    return browser.execute_script(js)

PICTURES = {'data.html': 1,  # the length histogram
            'tutorials/quickstart.html': 1, 'tutorials/dpo.html': 1,  # loss curves
            'tutorials/packing.html': 2}  # length histogram + row fill; packed rows + their mask

def test_pictures(site, browser):
    "The histograms, loss curves and the packed-row picture are on their pages, not empty."
    base, _ = site
    for page, n in PICTURES.items():
        imgs = page_images(browser, base, page)
        assert len(imgs) >= n and all(w > 100 and h > 100 for w, h in imgs), f"{page} images: {imgs}"

def test_tutorials_in_sidebar():
    "Every tutorial notebook is a page, in the Tutorials section, which comes right after Home."
    nav = yaml.safe_load((ROOT/'_site'/'mkdocs.yml').read_text())['nav']
    assert [next(iter(e)) for e in nav[:2]] == ['Home', 'Tutorials'], nav[:2]
    pages = {next(iter(i.values())) for i in nav[1]['Tutorials']}
    assert pages == {f'tutorials/{p.name}' for p in (ROOT/'nbs'/'tutorials').glob('*.ipynb')}, pages

def test_search_finds_multipack(site, browser):
    base, _ = site
    load(browser, base + 'index.html')
    box = browser.find_element(By.CSS_SELECTOR, 'input.md-search__input')  # in the header at desktop width
    WebDriverWait(browser, 10).until(lambda d: box.is_displayed())
    box.click()
    box.send_keys('multipack')
    js = "return [...document.querySelectorAll('.md-search-result__item')].map(e => e.innerText).join(' ')"
    text = WebDriverWait(browser, 30).until(lambda d: d.execute_script(js))  # the list re-renders as results arrive
    assert 'multipack' in text.lower(), text[:500]

def test_screenshots(site, browser, tmp_path):
    "Screenshots of the home page, a module page and a tutorial, saved in this test's temp dir."
    base, _ = site
    shots = {}
    pages = [('home', 'index.html'), ('attention', 'attention.html'), ('quickstart', 'tutorials/quickstart.html')]
    for name, page in pages:
        load(browser, base + page)
        shots[name] = tmp_path/f'{name}.png'
        assert browser.save_screenshot(str(shots[name]))
    print('screenshots:', *shots.values())
    assert all(p.stat().st_size > 10_000 for p in shots.values()), {k: p.stat().st_size for k, p in shots.items()}

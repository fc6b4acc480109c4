"""The gradio chat in a real browser: `axolotl-nb inference cfg.yml --gradio` on 127.0.0.1 with a tiny random model,
driven by headless Chromium through Selenium (apt: chromium chromium-driver; pip: selenium).

The user types a prompt and sees the answer stream in, presses stop — and the server really stops generating (its CPU
time stops growing, so the stop is not just the page ignoring further tokens) — then lowers "Max new tokens" in the
settings panel, sends a second turn, and sees both turns kept. The model never ends an answer by itself (no
end-of-sequence id in its generation config) and has 16 layers, so a 2000-token answer takes many seconds.
A screenshot of the page is saved as `gradio_chat.png` in the test's tmp dir.
"""
import os, re, shutil, signal, subprocess, time
from pathlib import Path

import pytest

pytest.importorskip('gradio', reason="extra `ui`: pip install 'axolotl_nb[ui]'")
webdriver = pytest.importorskip('selenium.webdriver', reason='pip install selenium')
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from toys import CLI, chat_config, free_port

CHROME, DRIVER = shutil.which('chromium') or shutil.which('chromium-browser'), shutil.which('chromedriver')
pytestmark = pytest.mark.skipif(not (CHROME and DRIVER), reason='apt-get install chromium chromium-driver')

def cpu_seconds(pid:int) -> float:
    "User + system CPU time of a process (all its threads) from /proc."
    f = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')

def endless_cfg(tmp_path:Path) -> Path:
    return chat_config(tmp_path, endless=True, num_layers=16)  # 16 layers: ~100 tokens/s on a shared core

@pytest.fixture
def server(tmp_path):
    "The CLI serving the chat; yields (url, pid, log path); interrupted (Ctrl-C) and reaped at the end."
    port, log = free_port(), tmp_path/'server.log'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'GRADIO_SERVER_NAME': '127.0.0.1', 'GRADIO_SERVER_PORT': str(port),
           'GRADIO_ANALYTICS_ENABLED': 'False', 'HF_HUB_OFFLINE': '1'}
    with open(log, 'w') as f:
        p = subprocess.Popen([CLI, 'inference', str(endless_cfg(tmp_path)), '--gradio', '--max-new-tokens', '2000'],
                             stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        t0 = time.time()
        while f'127.0.0.1:{port}' not in log.read_text():
            assert p.poll() is None and time.time() - t0 < 180, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f'http://127.0.0.1:{port}', p.pid, log
    finally:
        p.send_signal(signal.SIGINT)
        try: p.wait(timeout=30)
        except subprocess.TimeoutExpired: p.kill()
    assert p.returncode is not None

@pytest.fixture
def browser():
    o = webdriver.ChromeOptions()
    for a in ['--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1280,1100']: o.add_argument(a)
    o.binary_location = CHROME
    drv = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=o)
    yield drv
    drv.quit()

def wait_for(cond, timeout=60, every=0.1):
    t0 = time.time()
    while not (v := cond()):
        assert time.time() - t0 < timeout, 'timed out'
        time.sleep(every)
    return v

def texts(drv, who:str) -> list[str]:
    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, f'[data-testid={who}]')]

def shown(drv, css:str) -> list: return [e for e in drv.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]

def test_gradio_chat_streams_stops_and_keeps_history(server, browser, tmp_path):
    url, pid, log = server
    drv = browser
    drv.get(url)
    box = wait_for(lambda: shown(drv, 'textarea[data-testid=textbox]'))[0]    # the first textbox: the message
    system = shown(drv, 'textarea[data-testid=textbox]')[1]
    system.send_keys('Answer briefly.')
    box.send_keys('Say hello', Keys.ENTER)
    seen = set()
    wait_for(lambda: seen.add(len((texts(drv, 'bot') or [''])[-1])) or len(seen - {0}) >= 3)  # tokens stream in
    c0 = cpu_seconds(pid)
    time.sleep(1.0)
    busy = cpu_seconds(pid) - c0
    stop = wait_for(lambda: shown(drv, 'button.stop-button'))[0]
    stop.click()
    wait_for(lambda: shown(drv, 'button.submit-button'), timeout=5)           # the answer ended at once ...
    time.sleep(0.5)
    first = texts(drv, 'bot')[-1]
    c1 = cpu_seconds(pid)
    time.sleep(1.5)
    idle = cpu_seconds(pid) - c1
    assert texts(drv, 'bot')[-1] == first                                       # nothing more arrived
    assert idle < 0.25 * busy + 0.05, (busy, idle)                             # ... and nothing more is generated
    assert 0 < len(first) < 2000, len(first)                                   # stopped early (2000 tokens ≫ that)
    n = shown(drv, 'input[aria-label="number input for Max new tokens"]')[0]
    n.send_keys(Keys.CONTROL, 'a')
    n.send_keys('5', Keys.TAB)
    box.send_keys('and again', Keys.ENTER)
    wait_for(lambda: len(texts(drv, 'bot')) == 2 and texts(drv, 'bot')[-1] and shown(drv, 'button.submit-button'))
    time.sleep(0.5)
    assert texts(drv, 'user') == ['Say hello', 'and again']                    # both turns kept ...
    assert texts(drv, 'bot')[0] == first                                        # ... the stopped answer too
    second = texts(drv, 'bot')[1]
    assert 0 < len(re.sub(r'\s', '', second)) <= 5 * 16, second                 # "Max new tokens" = 5 took effect
    drv.save_screenshot(str(tmp_path/'gradio_chat.png'))
    assert 'Traceback' not in log.read_text(), log.read_text()[-3000:]

"""The fleet dashboard in a real headless Chromium: grid, counters, token, click-to-kill, a fault on a selection."""

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from helpers import TOKEN, free_base, free_port, refused, start_fleet, start_pods, wait_for

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

ARTIFACTS = Path(os.environ.get("FASTMOCK_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
COUNT = 5000


def find_chromium():
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by chromedriver; installed from Debian here when missing and we are root."""
    chromium, driver = find_chromium()
    if not (chromium and driver) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], capture_output=True,
                       timeout=900)
        chromium, driver = find_chromium()
    if not (chromium and driver):
        pytest.skip("no Chromium: Debian's chromium and chromium-driver are not installed and could not be "
                    "installed here (apt-get needs root and the package registry)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    session.set_script_timeout(10)
    yield session
    session.quit()


def text_of(browser, selector):
    return browser.find_element(By.CSS_SELECTOR, selector).text


def count_shown(browser, state):
    """The counter as the page shows it (read in one step: every delta redraws the counters)."""
    text = browser.execute_script(f'return document.querySelector(\'[data-state="{state}"] b\')?.textContent')
    return int(text) if text else None


def click_cell(browser, slot):
    cell, width, height = browser.execute_script("return [cell, canvas.width, canvas.height]")
    col, row = browser.execute_script(f"return place({slot})")
    canvas = browser.find_element(By.ID, "grid")
    ActionChains(browser).move_to_element_with_offset(
        canvas, col * cell + cell // 2 - width // 2, row * cell + cell // 2 - height // 2).click().perform()


def apply_fault(browser, typed_range, spec):
    """Type a range of ports and apply a fault spec to it, as a user does."""
    browser.find_element(By.ID, "range").send_keys(typed_range)
    browser.find_element(By.ID, "spec").send_keys(spec)
    browser.find_element(By.ID, "apply-fault").click()


def test_the_dashboard_shows_the_fleet_and_drives_it(browser):
    base = free_base(COUNT)
    with start_fleet(COUNT, "--workers", "2", "--token", TOKEN, "--max-port", str(base + COUNT + 99),
                     base=base, timeout=60) as fleet:
        alive = httpx.get(fleet.url + "/stats").json()["states"]["alive"]  # a port in use elsewhere may fail
        assert alive > COUNT - 50, fleet.log()
        browser.get(fleet.url + "/")
        wait_for(lambda: browser.execute_script("return states.length") == COUNT)
        wait_for(lambda: count_shown(browser, "alive") == alive)
        assert text_of(browser, "#live") == "live"
        width, height, cell, cols = browser.execute_script(
            "return [canvas.width, canvas.height, cell, cols]")
        assert cols * -(-COUNT // cols) >= COUNT and width == cols * cell and height >= -(-COUNT // cols) * cell
        # the canvas shows every port: sample the colour of a few cells
        alive_colour = browser.execute_script(
            "const d = ctx.getImageData(1, 1, 1, 1).data; return [d[0], d[1], d[2]]")
        assert alive_colour == [0x2e, 0x7d, 0x32]

        # a token is needed to change anything: the page asks once, and keeps it for the session
        token_box = browser.find_element(By.ID, "token-box")
        assert token_box.is_displayed()
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        assert not token_box.is_displayed()
        assert browser.execute_script("return sessionStorage.getItem('fastmock-token')") == TOKEN

        # a click on a cell kills that port
        slot = 123
        click_cell(browser, slot)
        wait_for(lambda: refused(base + slot))
        wait_for(lambda: count_shown(browser, "killed") == 1)
        assert count_shown(browser, "alive") == alive - 1
        assert "kill 1 port(s) " + str(base + slot) in text_of(browser, "#events")

        # a selection typed as a range gets a fault spec
        apply_fault(browser, f"{base + 200}-{base + 209}", "503")
        wait_for(lambda: count_shown(browser, "degraded") == 10)
        assert httpx.get(f"http://127.0.0.1:{base + 205}/health").status_code == 503

        # the chaos panel: its example schedule kills 1 % at once (for 5 s); Stop undoes it at once
        browser.find_element(By.ID, "chaos-start").click()
        wait_for(lambda: text_of(browser, "#chaos-status").startswith("running: 1 rule(s)"))
        wait_for(lambda: count_shown(browser, "killed") == 1 + COUNT // 100)
        browser.find_element(By.ID, "chaos-stop").click()
        wait_for(lambda: text_of(browser, "#chaos-status") == "no schedule running")
        wait_for(lambda: count_shown(browser, "killed") == 1)
        assert "outages (undo): revive" in text_of(browser, "#events")

        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        assert (ARTIFACTS / "dashboard.png").stat().st_size > 10000
        fleet.stop()


def test_a_tls_fleet_shows_certificate_states_and_sets_them(browser, tmp_path):
    base = free_base(500)
    with start_fleet(500, "--tls", "--tls-ca-dir", str(tmp_path), base=base) as fleet:
        api = httpx.Client(base_url=fleet.url, timeout=10)
        browser.get(fleet.url + "/")
        wait_for(lambda: browser.execute_script("return tls && tls.length") == 500)
        wait_for(lambda: tls_shown(browser, "valid") == 500)
        assert api.post("/tls", params={"ports": f"{base}-{base + 4}", "state": "expired"}).status_code == 200
        wait_for(lambda: tls_shown(browser, "expired") == 5)
        corner = browser.execute_script(  # the top-right corner of the first cell: the expired colour
            "const d = ctx.getImageData(cell - 2, 0, 1, 1).data; return [d[0], d[1], d[2]]")
        assert corner == [0xe9, 0x1e, 0x63]

        browser.find_element(By.ID, "range").send_keys(f"{base + 10}-{base + 19}")
        browser.find_element(By.ID, "tls-state").send_keys("handshake-reset")
        browser.find_element(By.ID, "apply-tls").click()
        wait_for(lambda: tls_shown(browser, "handshake-reset") == 10)
        assert "tls handshake-reset 10 port(s)" in text_of(browser, "#events")
        browser.find_element(By.ID, "clear-tls").click()
        wait_for(lambda: tls_shown(browser, "valid") == 495)
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "dashboard-tls.png"))
        fleet.stop()


def tls_shown(browser, state):
    text = browser.execute_script(f'return document.querySelector(\'[data-tls="{state}"] b\')?.textContent')
    return int(text) if text else None


def test_a_fleet_on_several_addresses_names_host_and_port(browser):
    base = free_base(10)
    with start_fleet(30, "--hosts", "127.0.0.2-127.0.0.4", "--max-port", str(base + 9), base=base) as fleet:
        browser.get(fleet.url + "/")
        wait_for(lambda: browser.execute_script("return states.length") == 30)
        assert browser.execute_script("return [portName(0), portName(15), portName(29)]") == \
            [f"127.0.0.2:{base}", f"127.0.0.3:{base + 5}", f"127.0.0.4:{base + 9}"]
        assert browser.execute_script("return [place(9)[1] < place(10)[1], place(10)[0], place(20)[0]]") == \
            [True, 0, 0]  # each address starts a row of its own
        click_cell(browser, 15)  # kills 127.0.0.3:base+5, not the same port on another address
        wait_for(lambda: refused(base + 5, "127.0.0.3"))
        assert not refused(base + 5, "127.0.0.2")
        apply_fault(browser, f"127.0.0.4:{base + 2}-127.0.0.4:{base + 4}", "503")
        wait_for(lambda: count_shown(browser, "degraded") == 3)
        assert httpx.get(f"http://127.0.0.4:{base + 3}/health").status_code == 503
        assert httpx.get(f"http://127.0.0.2:{base + 3}/health").status_code == 200
        assert browser.execute_script(f"return slotsOf('127.0.0.3:{base + 1}-127.0.0.3:{base + 4}')") == [11, 14]
        # a pod's host name may hold a "-" (a fleet of pods named by --advertise-host)
        typed = "fleet-1.pods:10001-fleet-1.pods:10003"
        assert browser.execute_script("groups = [['fleet-0.pods', 10000, 5], ['fleet-1.pods', 10000, 5]]; "
                                      f"starts = [0, 5]; return slotsOf('{typed}')") == [6, 8]
        fleet.stop()


def test_any_pod_shows_the_whole_fleet_of_several_pods(browser):
    base, mgmt_port = free_base(5), free_port()
    addresses = ("127.0.0.71", "127.0.0.72")
    with start_pods(addresses, ",".join(f"{address}:{mgmt_port}" for address in addresses), base, mgmt_port) as pods:
        browser.get(pods[0].url + "/")
        wait_for(lambda: browser.execute_script("return states.length") == 10)
        assert browser.execute_script("return [portName(0), portName(9), place(4)[1] < place(5)[1]]") == \
            [f"127.0.0.71:{base}", f"127.0.0.72:{base + 4}", True]  # each pod's ports start a row of their own
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        click_cell(browser, 7)  # the other pod's port: the click goes there through this pod
        wait_for(lambda: refused(base + 2, "127.0.0.72"))
        assert not refused(base + 2, "127.0.0.71")
        wait_for(lambda: count_shown(browser, "killed") == 1)
        wait_for(lambda: f"127.0.0.72:{base + 2}" in text_of(browser, "#events"))
        apply_fault(browser, f"127.0.0.72:{base + 3}-127.0.0.72:{base + 4}", "503")
        wait_for(lambda: count_shown(browser, "degraded") == 2)
        assert httpx.get(f"http://127.0.0.72:{base + 4}/health").status_code == 503
        assert httpx.get(f"http://127.0.0.71:{base + 4}/health").status_code == 200
        pods[1].stop()  # a pod that does not answer drops out of the picture
        wait_for(lambda: browser.execute_script("return states.length") == 5)


def test_the_dashboard_shows_the_monitors_running_score(browser):
    listen = free_port()
    with start_fleet(20, "--score-listen", f"127.0.0.1:{listen}") as fleet:
        browser.get(fleet.url + "/")
        wait_for(lambda: browser.execute_script("return states.length") == 20)
        port = httpx.get(fleet.url + "/endpoints", params={"limit": 1, "format": "json"}).json()[0]["port"]
        httpx.post(f"{fleet.url}/kill", params={"port": port})
        alert = {"status": "firing", "labels": {"instance": f"http://127.0.0.1:{port}/health"}}
        assert httpx.post(f"http://127.0.0.1:{listen}/", json={"alerts": [alert]}).status_code == 200
        wait_for(lambda: text_of(browser, "#score").startswith("monitor: recall 100% (1/1)"), timeout=15)
        assert "notified p50 0.0s, 0 false alert(s)" in text_of(browser, "#score")  # (no startsAt: as it came)
        fleet.stop()

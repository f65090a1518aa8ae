"""The admin page in a real browser: Debian's Chromium, headless, driven by selenium through
Debian's chromedriver, against the real server and the fake upstream (tests/it/admin_page.rs
starts both and checks what the fake received afterwards).

Signs in, adds an account and watches it turn healthy, creates a key, sends a request with it,
sees the request in the live list and the key's usage go up, revokes the key and sees it
refused. Saves a screenshot of each page in QWEN2API_SCREENSHOTS. Fails on any error the
browser logs (a Content-Security-Policy violation among them).
"""

import json
import os
import sys
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["QWEN2API_BASE"]
ADMIN_KEY = os.environ["QWEN2API_ADMIN_KEY"]
EMAIL = os.environ["QWEN2API_ACCOUNT_EMAIL"]
PASSWORD = os.environ["QWEN2API_ACCOUNT_PASSWORD"]
SHOTS = os.environ["QWEN2API_SCREENSHOTS"]
MODEL = "qwen3.7-plus"
# Generous: the machine running CI may be busy. Nothing here measures time.
WAIT = 60


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        "--no-proxy-server",
    ]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def chat(key):
    """A chat request with `key`; its status."""
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "Hello from the browser test"}]}
    ).encode()
    req = urllib.request.Request(
        BASE + "/v1/chat/completions",
        data=body,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=WAIT) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def main():
    os.makedirs(SHOTS, exist_ok=True)
    driver = browser()
    # The tables are drawn again every few seconds: an element found a moment ago may be gone.
    wait = WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException])
    find = driver.find_element

    def text(css):
        return wait.until(lambda d: d.find_element(By.CSS_SELECTOR, css).text or " ").strip()

    def click(css):
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True)

    def shot(name):
        driver.save_screenshot(os.path.join(SHOTS, name + ".png"))
        print("screenshot", name)

    def visible(element_id):
        wait.until(lambda d: d.find_element(By.ID, element_id).is_displayed())

    def tab(name):
        find(By.ID, "tab-" + name).click()
        visible(name)

    def key_row_cell(label, cls):
        return text(f'#keys-table tr[data-label="{label}"] td.{cls}')

    try:
        # Sign in: a wrong key first.
        driver.get(BASE + "/admin")
        visible("signin")
        find(By.ID, "signin-key").send_keys("sk-wrong")
        find(By.ID, "signin-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "signin-error").is_displayed())
        assert "refused" in find(By.ID, "signin-error").text, find(By.ID, "signin-error").text
        find(By.ID, "signin-key").clear()
        find(By.ID, "signin-key").send_keys(ADMIN_KEY)
        shot("signin")
        find(By.ID, "signin-submit").click()
        visible("accounts")
        assert ADMIN_KEY not in driver.current_url
        stored = driver.execute_script("return sessionStorage.getItem('qwen2api.adminKey')")
        assert stored == ADMIN_KEY, "the key is kept in sessionStorage"
        assert driver.execute_script("return localStorage.length") == 0

        # Accounts: none yet; add one by e-mail and password and watch it turn healthy.
        wait.until(lambda d: "No account yet" in d.find_element(By.ID, "accounts-table").text)
        find(By.ID, "add-email").send_keys(EMAIL)
        find(By.ID, "add-password").send_keys(PASSWORD)
        find(By.ID, "add-submit").click()
        row = f'#accounts-table tr[data-id="{EMAIL}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-state") == "active"
        )
        assert text(row + " td.state") == "active"
        wait.until(lambda d: "1 of 1 usable" in d.find_element(By.ID, "accounts-summary").text)
        click(row + " button.retest")
        wait.until(lambda d: "passed" in d.find_element(By.ID, "notice").text)
        # A proxy set (its password masked) and cleared.
        find(By.ID, "proxy-url").send_keys("socks5://user:pw-proxy-hidden@127.0.0.1:1080")
        find(By.ID, "proxy-set").click()
        wait.until(lambda d: "*****@127.0.0.1:1080" in d.find_element(By.CSS_SELECTOR, row + " td.proxy").text)
        assert "pw-proxy-hidden" not in driver.page_source
        find(By.ID, "proxy-clear").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row + " td.proxy").text == "—")
        assert text(row + " td.site") == "qwen"
        # A Tongyi account by cookie and XSRF token: listed with its site; a re-test says a
        # cookie cannot be checked and leaves it as it was; then it is deleted again.
        click('#add-kind option[value="tongyi"]')
        find(By.ID, "add-tongyi-cookie").send_keys("login_tongyi_ticket=browser-ci-cookie")
        find(By.ID, "add-xsrf").send_keys("browser-ci-xsrf")
        find(By.ID, "add-num").send_keys("9")
        find(By.ID, "add-submit").click()
        cn_row = '#accounts-table tr[data-id="tongyi_9"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, cn_row))
        assert text(cn_row + " td.site") == "tongyi"
        assert "browser-ci-cookie" not in driver.page_source
        click(cn_row + " button.retest")
        wait.until(lambda d: "unsupported_by_site" in d.find_element(By.ID, "notice").text)
        wait.until(lambda d: "2 of 2 usable" in d.find_element(By.ID, "accounts-summary").text)
        shot("accounts")
        click(cn_row + " button.delete")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, cn_row + " button.delete").text == "Confirm delete")
        click(cn_row + " button.delete")
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, cn_row))
        wait.until(lambda d: "1 of 1 usable" in d.find_element(By.ID, "accounts-summary").text)

        # Keys: create one; it is shown once.
        tab("keys")
        find(By.ID, "key-label").send_keys("browser-ci")
        find(By.ID, "key-rpm").send_keys("100")
        find(By.ID, "key-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "new-key").is_displayed())
        key = find(By.ID, "new-key-value").text
        assert key.startswith("sk-q2a-"), key
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#keys-table tr[data-label="browser-ci"]'))
        assert key_row_cell("browser-ci", "requests-today") == "0"
        assert text('#keys-table tr[data-label="browser-ci"] td.limits') == "100/min"
        # Edit its limits: the form is filled with the current ones.
        click('#keys-table tr[data-label="browser-ci"] button.edit')
        wait.until(lambda d: d.find_element(By.ID, "key-rpm").get_attribute("value") == "100")
        find(By.ID, "key-rpm").clear()
        find(By.ID, "key-rpm").send_keys("50")
        find(By.ID, "key-tpd").send_keys("1000000")
        find(By.ID, "key-submit").click()
        wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, '#keys-table tr[data-label="browser-ci"] td.limits'
        ).text == "50/min; 1,000,000 tokens/day")
        assert key not in text("#keys-table"), "the table shows the key masked"

        # A request with it: in the live list, and the key's usage goes up.
        tab("live")
        wait.until(lambda d: d.find_element(By.ID, "live-state").text == "live")
        assert chat(key) == 200
        live_row = "#live-table tbody tr[data-request-id]"
        wait.until(lambda d: any(
            r.find_element(By.CSS_SELECTOR, "td.key").text == "browser-ci"
            for r in d.find_elements(By.CSS_SELECTOR, live_row)
        ))
        cells = wait.until(lambda d: [
            c.text for c in d.find_elements(By.CSS_SELECTOR, live_row + ":first-child td")
        ])
        assert cells[1:6] == ["browser-ci", "chat.completions", MODEL, EMAIL, "200"], cells
        # The filter narrows the list.
        find(By.ID, "filter-status").send_keys("5")
        wait.until(lambda d: "No request yet" in d.find_element(By.ID, "live-table").text)
        find(By.ID, "filter-status").clear()
        find(By.ID, "filter-key").send_keys("browser")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, live_row))
        shot("live")

        tab("keys")
        wait.until(lambda d: key_row_cell("browser-ci", "requests-today") == "1")
        assert key_row_cell("browser-ci", "tokens-today") != "0"
        shot("keys")

        # Usage: a bar for the key.
        tab("usage")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-key-requests svg rect"))
        legend = text("#chart-key-requests .legend")
        assert "browser-ci" in legend, legend
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-account-tokens svg rect"))
        shot("usage")

        # Settings: every secret masked; reload.
        tab("settings")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#settings-table tbody tr")) > 20)
        admin_row = text('#settings-table tr[data-name="ADMIN_KEY"] td.value')
        assert admin_row == "(set, hidden)", admin_row
        assert ADMIN_KEY not in driver.page_source
        assert PASSWORD not in find(By.ID, "settings").text
        find(By.ID, "reload").click()
        wait.until(lambda d: "Reloaded" in d.find_element(By.ID, "reload-result").text)
        shot("settings")

        # Revoke the key (two clicks) and see it refused.
        tab("keys")
        revoke = '#keys-table tr[data-label="browser-ci"] button.revoke'
        click(revoke)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, revoke).text == "Confirm revoke")
        click(revoke)
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '#keys-table tr[data-label="browser-ci"]'))
        refused = chat(key)
        assert refused in (401, 403), refused
        print("refused after revoke:", refused)

        # The wrong key's 401 is logged as a failed load; anything else (a script error, a
        # Content-Security-Policy violation) fails the test.
        errors = [
            e for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "the server responded with a status of 401" not in e["message"]
        ]
        assert not errors, errors
        print("admin page: ok")
    except Exception:
        shot("failure")
        print(driver.page_source[:4000], file=sys.stderr)
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    main()

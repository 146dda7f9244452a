"""
A person at a browser: Debian's Chromium, headless, driven by Selenium through Debian's chromedriver
(nothing downloads a browser). Runs on the client host; the password comes on stdin.

  webmail.py URL LOGIN SHOTS read-send SUBJECT TO SENT_SUBJECT FOLDER FROM
      logs in, finds SUBJECT in the inbox, sends SENT_SUBJECT to TO, makes FOLDER and a filter
      "from FROM → FOLDER"; keeps the session's cookies in SHOTS/cookies.json
  webmail.py URL LOGIN SHOTS folder-logout FOLDER SUBJECT
      with those cookies: finds SUBJECT in FOLDER, logs out, and tries the old cookies again
  webmail.py URL LOGIN SHOTS wrong-password
      a login with a wrong password is refused

Each page is kept as SHOTS/NN-name.png; the script prints "shot NAME PATH" for each and "ok" at the end.
Chromium trusts what is in the client's NSS database (the harness puts the ACME CA's root there).
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

url, login, shots, action, *args = sys.argv[1:]
password = sys.stdin.read().strip()
os.makedirs(shots, exist_ok=True)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US"]:
        options.add_argument(flag)
    # What the page's console says: a Content-Security-Policy violation shows there.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


driver = browser()
wait = WebDriverWait(driver, 30)
counter = [len([f for f in os.listdir(shots) if f.endswith(".png")])]


def shot(name):
    counter[0] += 1
    path = os.path.join(shots, f"{counter[0]:02d}-{name}.png")
    driver.save_screenshot(path)
    print(f"shot {name} {path}", flush=True)


def fail(message):
    shot("failure")
    print(f"FAILED: {message}\nat {driver.current_url}", file=sys.stderr)
    for entry in driver.get_log("browser"):
        print(f"console: {entry['level']} {entry['message']}", file=sys.stderr)
    driver.quit()
    sys.exit(1)


def visible(css, within=None):
    try:
        return wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        fail(f"no visible {css}")


def until(condition, what, seconds=30):
    # The page may be replaced while a condition reads it (a form posts, the next page loads): an element
    # found just before is stale then, which means "not yet", not a failure.
    try:
        return WebDriverWait(driver, seconds, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(lambda d: condition())
    except TimeoutException:
        fail(what)


def in_frame(css):
    """Switches into the content frame (settings forms and filters load there) once it shows css."""
    driver.switch_to.default_content()
    frame = visible("#layout-content iframe")
    driver.switch_to.frame(frame)
    return visible(css)


def save_frame_form():
    # The form's own Save button, in the frame or (elastic's dialog layout) below it.
    for where in ("frame", "page"):
        buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, "button.submit, input.button.mainaction, button.mainaction") if b.is_displayed()]
        if buttons:
            buttons[0].click()
            return
        driver.switch_to.default_content()
    fail("no Save button")


def confirmation(text):
    driver.switch_to.default_content()
    until(lambda: text.lower() in driver.find_element(By.ID, "messagestack").text.lower(), f'no "{text}" message')


def log_in(user, secret):
    driver.get(url)
    visible("#rcmloginuser").send_keys(user)
    driver.find_element(By.ID, "rcmloginpwd").send_keys(secret)
    shot("login")
    driver.find_element(By.ID, "rcmloginsubmit").click()


def csp_violations():
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"] or "violates" in e["message"]]


def restore(cookies):
    # Cookies belong to a page of their site: open one that sets none (a static file) first.
    driver.get(url + "skins/elastic/watermark.html")
    for cookie in cookies:
        driver.add_cookie({k: v for k, v in cookie.items() if k in ("name", "value", "path", "secure", "httpOnly", "sameSite")})


def open_folder(name):
    driver.get(f"{url}?_task=mail&_mbox={name}")
    visible("#messagelist")


if action == "read-send":
    subject, to, sent_subject, folder, sender = args
    log_in(login, password)
    visible("#messagelist")
    until(lambda: subject in driver.find_element(By.ID, "messagelist").text, f'"{subject}" is not in the inbox')
    shot("inbox")

    driver.find_element(By.CSS_SELECTOR, "a.compose").click()
    recipient = visible("#compose_to input, .recipient-input input")
    recipient.send_keys(to + ",")
    visible("#compose-subject").send_keys(sent_subject)
    driver.find_element(By.ID, "composebody").send_keys("Sent from the webmail, in a real browser.\n")
    shot("compose")
    until(lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "button.send, a.send") if b.is_displayed()], "no Send button")
    [b for b in driver.find_elements(By.CSS_SELECTOR, "button.send, a.send") if b.is_displayed()][0].click()
    until(lambda: "_action=compose" not in driver.current_url, "the message was not sent", 60)
    shot("sent")

    driver.get(f"{url}?_task=settings&_action=folders")
    visible("a.create").click()
    in_frame("input[name=_name]").send_keys(folder)
    shot("new-folder")
    save_frame_form()
    confirmation("successfully")

    driver.get(f"{url}?_task=settings&_action=plugin.managesieve")
    visible("a.create").click()
    in_frame("input[name=_name]").send_keys(f"from {sender}")
    Select(visible("select[name='_header[0]']")).select_by_value("from")
    Select(visible("select[name='_rule_op[0]']")).select_by_value("contains")
    visible("input[name='_rule_target[0][]']").send_keys(sender)
    Select(visible("select[name='_action_type[0]']")).select_by_value("fileinto")
    Select(visible("select[name='_action_mailbox[0]']")).select_by_value(folder)
    shot("new-filter")
    save_frame_form()
    confirmation("successfully")
    driver.switch_to.default_content()
    shot("filters")
    violations = csp_violations()
    if violations:
        fail("Content-Security-Policy violations:\n" + "\n".join(violations))
    cookies = [c for c in driver.get_cookies()]
    with open(os.path.join(shots, "cookies.json"), "w") as f:
        json.dump(cookies, f)

elif action == "folder-logout":
    folder, subject = args
    with open(os.path.join(shots, "cookies.json")) as f:
        cookies = json.load(f)
    restore(cookies)
    open_folder(folder)
    until(lambda: subject in driver.find_element(By.ID, "messagelist").text, f'"{subject}" is not in {folder}')
    shot("filtered")
    driver.get(f"{url}?_task=logout&_token=" + driver.execute_script("return rcmail.env.request_token"))
    visible("#rcmloginuser")
    shot("logged-out")
    # The old session's cookies again: the server has forgotten it, so the login form comes back.
    driver.delete_all_cookies()
    restore(cookies)
    driver.get(f"{url}?_task=mail&_mbox={folder}")
    visible("#rcmloginuser")
    if driver.find_elements(By.ID, "messagelist"):
        fail("the old session still shows the mailbox")
    shot("old-session-refused")

elif action == "wrong-password":
    log_in(login, password + "-wrong")
    until(lambda: "login failed" in driver.find_element(By.ID, "messagestack").text.lower(), "no login-failed message")
    shot("wrong-password")

driver.quit()
print("ok")

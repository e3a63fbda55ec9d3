"""The course site in a real browser: headless Chromium (Debian's chromium and chromium-driver) visits every
page of the built site (``python tools/course_site.py``) over a local HTTP server and checks that

* no page requests anything outside localhost (MathJax, its fonts and the theme's come with the site);
* each lesson page shows its figures (loaded images of non-zero size);
* the "next" links walk through the lessons in the order of lessons/README.md;
* search finds a lesson by a term from its text;
* a predict task's answer stays collapsed until its summary is clicked;

and saves screenshots of three pages in site-screenshots/. Skipped, saying why, when the site is not built
or Chromium, its driver or Selenium is missing; under CI (``CI`` set) a missing browser is an error, and so
is a missing site when ``SCRATCHNET_REQUIRE_SITE`` is set (CI's step after the build)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from site_tool import course_site

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "build" / "site" / "html"
SCREENSHOTS = ROOT / "site-screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SEARCH_TERM, SEARCH_FINDS = "roofline", "lessons/10_tiling_and_the_roofline.html"  # a word of lesson 10

pytestmark = pytest.mark.slow


def _missing(what: str, required: bool) -> None:
    if required:
        pytest.fail(f"{what}, and this run requires it")
    pytest.skip(what)


def _browser_ready() -> None:
    in_ci = bool(os.environ.get("CI"))
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            _missing(f"no {path}: apt-get install {package}", required=in_ci)
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing('no Selenium: pip install -e ".[docs]"', required=in_ci)
    if not (HTML / "index.html").is_file():
        _missing(
            f"the site is not built ({HTML.relative_to(ROOT)}): python tools/course_site.py",
            required=bool(os.environ.get("SCRATCHNET_REQUIRE_SITE")),
        )


@pytest.fixture(scope="module")
def site_url():
    _browser_ready()
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury the test's own output
        pass


@pytest.fixture(scope="module")
def browser(site_url):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-dev-shm-usage",  # a container's small /dev/shm would crash the renderer
        "--window-size=1280,1400",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request, as CDP events
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _network(driver) -> tuple[list[str], list[str]]:
    """The URLs the browser requested since the last call, and those answered with an HTTP error (the
    Network.requestWillBeSent and Network.responseReceived events of its log)."""
    requested, failed = [], []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            requested.append(params["request"]["url"])
        # The browser asks for /favicon.ico by itself; the site has none.
        elif message["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            if urlsplit(params["response"]["url"]).path != "/favicon.ico":
                failed.append(params["response"]["url"])
    return requested, failed


def _outside(urls: list[str]) -> list[str]:
    """The URLs that leave the machine: anything but localhost, data: and blob: URLs."""
    local = ("127.0.0.1", "localhost")
    return [
        url
        for url in urls
        if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname not in local
    ]


LESSON_PAGES = [f"lessons/{Path(name).stem}.html" for name in course_site.lesson_order()]


def _pages() -> list[str]:
    """Every HTML page of the site, relative to its root (not the theme's and Sphinx's own files)."""
    pages = [path.relative_to(HTML).as_posix() for path in HTML.rglob("*.html")]
    return sorted(page for page in pages if not page.startswith(("_static/", "_sources/", "_images/")))


def _open(driver, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


FIGURES = """return Array.from(document.querySelectorAll('.cell_output img')).map(
    img => [img.getAttribute('src'), img.complete, img.naturalWidth, img.naturalHeight])"""
# A lesson's predict answers and predict outputs: how many there are, and how many of them are open.
ANSWERS = """const answers = document.querySelectorAll('details.answer, .tag_predict details');
return [answers.length, Array.from(answers).filter(d => d.open).length]"""


def test_every_page_loads_only_local_files_and_lessons_show_figures_and_hide_answers(browser, site_url):
    pages = _pages()
    assert set(LESSON_PAGES) <= set(pages), f"lesson pages missing: {set(LESSON_PAGES) - set(pages)}"
    _network(browser)  # forget what came before
    outside, failed, without_figures, open_answers, requested = {}, {}, {}, {}, 0
    for page in [*pages, None]:  # None: what the last page loads after it is complete (fonts, scripts)
        if page is not None:
            _open(browser, site_url + page)
        if page in LESSON_PAGES:
            figures = browser.execute_script(FIGURES)
            shown = [src for src, complete, width, height in figures if complete and width > 0 and height > 0]
            if not shown or len(shown) < len(figures):
                without_figures[page] = figures
            answers, shown_answers = browser.execute_script(ANSWERS)
            if not answers or shown_answers:
                open_answers[page] = f"{shown_answers} of {answers} answers open"
        urls, errors = _network(browser)
        requested += len(urls)
        where = page or "after the last page"
        if _outside(urls):
            outside[where] = _outside(urls)
        if errors:
            failed[where] = errors
    assert requested >= len(pages), f"the browser's log shows {requested} requests for {len(pages)} pages"
    assert not outside, f"requests outside localhost: {outside}"
    assert not failed, f"requests answered with an HTTP error: {failed}"
    assert not open_answers, (
        f"lesson pages without a closed predict answer, or with an open one: {open_answers}"
    )
    assert not without_figures, (
        f"lesson pages whose figures did not load (src, complete, w, h): {without_figures}"
    )


def test_next_links_walk_through_the_lessons_in_order(browser, site_url):
    from selenium.webdriver.common.by import By

    _open(browser, site_url + LESSON_PAGES[0])
    walked = [LESSON_PAGES[0]]
    while len(walked) < len(LESSON_PAGES):
        links = browser.find_elements(By.CSS_SELECTOR, "a.right-next")
        assert links, f"{walked[-1]} has no 'next' link"
        _open(browser, links[0].get_attribute("href"))
        walked.append(browser.current_url.removeprefix(site_url).split("#")[0])
    assert walked == LESSON_PAGES, "the 'next' links do not follow lessons/README.md"


def test_search_finds_a_lesson(browser, site_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, f"{site_url}search.html?q={SEARCH_TERM}")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results li a"))
    found = [
        a.get_attribute("href").removeprefix(site_url).split("?")[0].split("#")[0]
        for a in browser.find_elements(By.CSS_SELECTOR, "#search-results li a")
    ]
    assert SEARCH_FINDS in found, f"searching {SEARCH_TERM!r} found {found}"


def test_a_predict_answer_is_collapsed_until_clicked(browser, site_url):
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(exist_ok=True)
    _open(browser, site_url)
    browser.save_screenshot(str(SCREENSHOTS / "home.png"))
    _open(browser, site_url + LESSON_PAGES[1])
    answer = browser.find_elements(By.CSS_SELECTOR, "details.answer")[0]
    text = answer.find_element(By.CSS_SELECTOR, "p")
    summary = answer.find_element(By.TAG_NAME, "summary")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    assert answer.get_attribute("open") is None and not text.is_displayed(), "the answer is shown unasked"
    browser.save_screenshot(str(SCREENSHOTS / "lesson-predict-collapsed.png"))
    summary.click()
    assert text.is_displayed(), "clicking 'Answer' does not show the answer"


def test_screenshot_of_a_lesson_with_figures(browser, site_url):
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(exist_ok=True)
    page = next(page for page in LESSON_PAGES if page.startswith("lessons/08_"))
    _open(browser, site_url + page)
    figure = browser.find_elements(By.CSS_SELECTOR, ".cell_output img")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", figure)
    browser.save_screenshot(str(SCREENSHOTS / "lesson-figures.png"))

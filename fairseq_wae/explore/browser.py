"""A headless Chromium driven by Selenium, as the tests, the benchmark and the README's screenshot use
the page: the distribution's browser (``chromium`` and ``chromium-driver``, which scripts/setup.sh
installs), never one downloaded by a driver manager.

The flags keep it from reaching for the network (background updates, sync, QUIC), which on a machine
without one stalls its start; each browser gets a fresh profile folder, removed when it quits."""
import logging
import os
import shutil
import tempfile

# its every request to the driver at DEBUG, which a root logger set to DEBUG (fairseq's) would print
logging.getLogger("selenium").setLevel(logging.WARNING)
logging.getLogger("urllib3").setLevel(logging.WARNING)

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def find_browser():
    """(chromium, chromedriver) paths, or a message saying how to install them."""
    browser = next((path for path in CHROMIUM if os.path.isfile(path)), None)
    driver = next((path for path in CHROMEDRIVER if os.path.isfile(path)), None)
    if browser and driver:
        return browser, driver, None
    return None, None, ("no headless browser: the explore page is tested in the distribution's Chromium. Run "
                        "scripts/setup.sh (as root it installs it through apt), or: apt-get install chromium "
                        "chromium-driver")


class HeadlessChromium:
    """``with HeadlessChromium(width, height) as driver:`` a Selenium WebDriver of a fresh headless
    Chromium, quit (and its profile removed) on leaving."""

    def __init__(self, width: int = 1280, height: int = 900):
        self.size = (width, height)

    def __enter__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        browser, driver, problem = find_browser()
        if problem:
            raise RuntimeError(problem)
        self.profile = tempfile.mkdtemp(prefix="explore-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in FLAGS + (f"--user-data-dir={self.profile}", f"--window-size={self.size[0]},{self.size[1]}"):
            options.add_argument(flag)
        try:
            self.driver = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        except Exception:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        return self.driver

    def __exit__(self, *exc):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

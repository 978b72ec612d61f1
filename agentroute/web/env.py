"""MiniWoB++ tasks in a real headless Chromium: Debian's ``chromium`` driven by its ``chromedriver``.

The ``miniwob`` package ships the task pages and a Gymnasium environment over Selenium. This
module starts that environment with the browser and driver found on this machine (never one that
Selenium would download), the flags a container needs (``--no-sandbox`` as root, no background
networking, no GPU), and turns its observations into :class:`~agentroute.web.dom.Page` and our
:class:`~agentroute.web.actions.Action` into MiniWoB actions.

Errors: :class:`BrowserNotFoundError` (with the command that installs the browser),
:class:`UnknownTaskError` (listing the tasks), :class:`BrowserCrashedError` (the browser or its
driver died mid-episode; the session can be reopened).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import difflib
import logging
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agentroute.errors import AgentrouteError, ConfigurationError, MissingDependencyError, UnknownNameError
from agentroute.web.actions import Action
from agentroute.web.dom import Page, page_from_observation
from agentroute.web.task_page import TaskPageProbe, opener_for

log = logging.getLogger(__name__)
T = TypeVar("T")

INSTALL_HINT = (
    "install Debian's browser and driver with `sudo apt-get install chromium chromium-driver` "
    "(or point MINIWOB_CHROME_BINARY and MINIWOB_CHROMEDRIVER at a Chromium and its chromedriver)"
)


class BrowserNotFoundError(ConfigurationError):
    """Chromium or chromedriver is missing."""


class BrowserCrashedError(AgentrouteError):
    """The browser or its driver stopped answering during an episode."""


class PageLoadError(AgentrouteError):
    """The task page did not finish loading within its limit (:func:`page_load_timeout`)."""


#: Seconds a task page may take to load before the browser counts as failed to start, by default.
#: MiniWoB's own pages load in under 0.6 s even on a 2-core box at load 9 (Selenium's default: 300 s).
PAGE_LOAD_TIMEOUT_S = 30.0
#: Seconds a browser command may run past the page-load limit before its browser counts as hung
#: (chromedriver itself gives up on a busy renderer at the page-load limit; this catches the rest).
COMMAND_GRACE_S = 2.0
#: The environment variable that sets the limit for every browser of a run (``run web`` too).
PAGE_LOAD_ENV = "AGENTROUTE_WEB_PAGE_LOAD_S"


def page_load_timeout(seconds: float | None = None) -> float:
    """The page-load limit in seconds: ``seconds`` when given, else ``$AGENTROUTE_WEB_PAGE_LOAD_S``,
    else :data:`PAGE_LOAD_TIMEOUT_S`. A value that is not a number > 0 is a
    :class:`~agentroute.errors.ConfigurationError` naming where it came from."""
    source = "page_load_timeout_s"
    value: object = seconds
    if value is None:
        value, source = os.environ.get(PAGE_LOAD_ENV, "").strip() or None, PAGE_LOAD_ENV
    if value is None:
        return float(PAGE_LOAD_TIMEOUT_S)
    try:
        limit = float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        limit = math.nan
    if not math.isfinite(limit) or limit <= 0:
        raise ConfigurationError(f"{source} must be a number of seconds > 0 (got {value!r})")
    return limit


def check_miniwob_url(url: str, source: str = "miniwob_url") -> str:
    """``url`` as the base URL of MiniWoB++ task pages (``<url>click-test.html``), ending in ``/``
    so that the last folder is kept: an ``http(s)://HOST[:PORT]/…`` URL, or a ``file://`` URL of an
    existing folder. Anything else is a :class:`~agentroute.errors.ConfigurationError` naming
    ``source`` (the CLI gives ``--miniwob-url``).

    >>> check_miniwob_url("http://127.0.0.1:8080/miniwob")
    'http://127.0.0.1:8080/miniwob/'
    >>> check_miniwob_url("127.0.0.1:8080", "--miniwob-url")
    Traceback (most recent call last):
    ...
    agentroute.errors.ConfigurationError: --miniwob-url '127.0.0.1:8080' is not an http(s):// or file:// URL (e.g. http://127.0.0.1:8080/miniwob/)
    """
    import urllib.parse
    import urllib.request

    text = url.strip() if isinstance(url, str) else ""
    try:
        parts = urllib.parse.urlsplit(text)
        port_ok = parts.port is None or parts.port > 0  # urllib raises for a port out of 0-65535
    except ValueError:  # an unclosed IPv6 bracket, a port that is no number
        parts, port_ok = urllib.parse.urlsplit(text.replace("[", "").replace("]", "")), False
    example = "(e.g. http://127.0.0.1:8080/miniwob/)"
    if parts.scheme in ("http", "https") and parts.hostname:
        if not port_ok:
            port = parts.netloc.rpartition(":")[2]
            raise ConfigurationError(f"{source} {url!r}: the port must be a number 1-65535 (got {port!r})")
    elif parts.scheme == "file" and parts.path:
        if not os.path.isdir(urllib.request.url2pathname(parts.path)):
            raise ConfigurationError(
                f"{source} {url!r}: the folder {parts.path} does not exist; give a folder of MiniWoB++ task pages"
            )
    else:
        raise ConfigurationError(f"{source} {url!r} is not an http(s):// or file:// URL {example}")
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"{source} {url!r}: drop the ?query or #fragment: task pages are <URL><task>.html {example}"
        )
    return (
        text if parts.path.endswith("/") else urllib.parse.urlunsplit(parts._replace(path=parts.path + "/"))
    )


class UnknownTaskError(UnknownNameError):
    """A MiniWoB task name that the installed ``miniwob`` package does not ship."""

    def __init__(self, name: str, known: list[str]):
        super().__init__("MiniWoB task", name, known)
        # the closest names first: the full list is ~130 names, the one meant is easy to miss in it
        close = difflib.get_close_matches(name, self.known, n=3, cutoff=0.6)
        if close:
            hint = " or ".join(repr(c) for c in close)
            self.args = (
                f"unknown MiniWoB task {name!r}; did you mean {hint}? known: {', '.join(self.known)}",
            )


#: Where Chromium sends those of its own requests that no switch turns off: loopback, which it never
#: asks a proxy for, on port 9, which it refuses to connect to (``ERR_UNSAFE_PORT``): they fail at
#: once, without a connection.
_NOWHERE = "http://127.0.0.1:9/"


def chromium_flags(*, headless: bool = True) -> list[str]:
    """Chromium flags for a container: headless, no sandbox as root, and no request of its own, so
    that a proxy of the environment (``http_proxy``) sees no host but the task pages'."""
    flags = [
        "--disable-gpu",  # no GPU process: a container has no GPU
        "--disable-dev-shm-usage",  # shared memory in /tmp, not a container's 64 MB /dev/shm
        "--disable-background-networking",  # Safe Browsing lists, variations seed, extension updates
        "--disable-component-update",  # the component updater's schedule (not on-demand checks: below)
        "--disable-default-apps",  # no default apps installed on first run
        "--disable-extensions",  # no extensions, nor their update checks
        "--disable-sync",  # no Google account sync
        # Translate: its language lists; MediaRouter: Cast discovery; OptimizationHints: page-hint
        # fetches; NetworkTimeServiceQuerying: the secure-time query (clients2.google.com/time)
        "--disable-features=Translate,MediaRouter,OptimizationHints,NetworkTimeServiceQuerying",
        # the component checks asked for on demand (the on-device model manifest of Chromium 15x,
        # update.googleapis.com), which --disable-component-update lets through
        f"--component-updater=url-source={_NOWHERE}",
        # the Google-account listing every profile asks for at start (accounts.google.com/ListAccounts)
        f"--gaia-url={_NOWHERE}",
        "--metrics-recording-only",  # usage metrics are not uploaded
        "--no-first-run",  # no first-run dialogs
        "--no-default-browser-check",  # no default-browser prompt
        "--mute-audio",  # no sound
        "--password-store=basic",  # no system keyring (GNOME, KDE) asked for
    ]
    if headless:
        flags.insert(0, "--headless=new")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
    return flags


def find_chromium() -> tuple[str, str]:
    """``(chromium, chromedriver)`` paths: the ``MINIWOB_*`` variables, else Debian's on PATH.

    A variable that names no executable file is an error naming it (not Debian's browser instead,
    nor Selenium's "Unable to obtain driver" once an episode starts)."""
    named = {"chromium": "MINIWOB_CHROME_BINARY", "chromedriver": "MINIWOB_CHROMEDRIVER"}
    given = {
        name: os.path.expanduser(os.environ.get(variable) or "") for name, variable in named.items()
    }  # ~ from a .env file
    for name, variable in named.items():
        value = given[name]
        if value and not (os.path.isfile(value) and os.access(value, os.X_OK)):
            why = (
                "is a directory"
                if os.path.isdir(value)
                else "is not executable"
                if os.path.isfile(value)
                else "does not exist"
            )
            raise BrowserNotFoundError(
                f"{variable}={value} {why}: point it at an executable file, or unset "
                "it to use Debian's on PATH (`sudo apt-get install chromium chromium-driver`)"
            )
    chrome = given["chromium"] or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = given["chromedriver"] or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chrome), ("chromedriver", driver)) if not path]
    if missing:
        raise BrowserNotFoundError(f"{' and '.join(missing)} not found: {INSTALL_HINT}")
    return str(chrome), str(driver)


def _import_miniwob() -> Any:
    try:
        import gymnasium
        import miniwob
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "miniwob", "web") from exc
    gymnasium.register_envs(miniwob)
    return miniwob


def available_tasks() -> list[str]:
    """Every MiniWoB task the installed package ships (``click-test``, ``enter-text`` …)."""
    _import_miniwob()
    import gymnasium

    names = [
        k.removeprefix("miniwob/").rsplit("-v", 1)[0] for k in gymnasium.registry if k.startswith("miniwob/")
    ]
    return sorted(set(names))


def check_tasks(tasks: list[str]) -> list[str]:
    """``tasks`` when all exist; :class:`UnknownTaskError` listing the available ones otherwise."""
    known = available_tasks()
    for task in tasks:
        if task not in known:
            raise UnknownTaskError(task, known)
    return tasks


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the browser reports after an action."""

    page: Page | None  # None once the episode is over
    reward: float  # MiniWoB's reward (time-discounted; -1 … 1); 0 while the episode runs
    done: bool
    raw_reward: float = 0.0
    reason: str = ""


#: Taken for microseconds to mark a Selenium instance closing (its ``close`` runs once).
_CLOSING = threading.Lock()
#: Seconds a second ``close`` of a browser waits for the first: its ``quit`` (Selenium's shutdown
#: request, 10 s, and its wait for the port, 30 s), the sweep and the folder's removal.
_CLOSE_WAIT_S = 60.0
#: Whether a stop signal reached this process's job (:func:`note_stop_signal`): the browsers got it too.
_SIGNALLED = False


def note_stop_signal() -> None:
    """Say that Ctrl-C or SIGTERM is stopping this program: a terminal's Ctrl-C reaches chromedriver
    and Chromium too, so browser processes found without their chromedriver are expected, not a
    lost chromedriver to warn about."""
    global _SIGNALLED
    _SIGNALLED = True


def _stopped_by_signal(service: Any) -> bool:
    """Whether the chromedriver of Selenium's ``service`` died of SIGINT or SIGTERM: the stop signal
    reached the whole job, maybe before this process's handler ran :func:`note_stop_signal` (the
    thread whose command or start it cut off closes the browser at once)."""
    process = getattr(service, "process", None)
    try:
        code = process.poll() if process is not None else None
    except OSError:
        return False
    return code in (-signal.SIGINT, -signal.SIGTERM)


def _remove(folder: str, *, seconds: float = 5.0) -> None:
    """Remove a browser's folder, again while a dying Chromium still writes into it (after a Ctrl-C
    that reached it, ``quit`` returns before its processes have exited)."""
    deadline = time.monotonic() + seconds
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.exists(folder) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _kill_strays(folder: str, *, warn: bool = True) -> list[int]:
    """SIGKILL the processes of a browser whose driver is gone: those started with ``TMPDIR=folder``
    or naming ``folder`` on their command line (its profile). A Chromium whose chromedriver was
    killed is not stopped by ``quit`` and would run on, a dozen processes, forever. Linux only."""
    if not os.path.isdir("/proc"):
        return []
    marks = (f"TMPDIR={folder}\0".encode(), folder.encode() + b"/")
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = b"\0" + f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:  # gone, or another user's
            continue
        if b"\0" + marks[0] in environ or marks[1] in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(name), signal.SIGKILL)
                killed.append(int(name))
    if killed:
        if warn:
            log.warning("killed %d browser processes left by a lost chromedriver", len(killed))
        if left := _wait_gone(killed):
            log.warning("browser processes %s still running %g s after SIGKILL", left, _KILL_WAIT_S)
    return killed


#: Seconds :func:`_kill_strays` waits for the processes it killed to be gone.
_KILL_WAIT_S = 5.0


def _wait_gone(pids: list[int]) -> list[int]:
    """Wait (at most :data:`_KILL_WAIT_S`) until each of ``pids`` has exited, reaping those that are
    this process's children (chromedriver is): a SIGKILLed Chromium takes a moment to exit, and until
    then it still holds its profile folder and port. Returns those still running at the deadline."""
    deadline = time.monotonic() + _KILL_WAIT_S
    left = set(pids)
    while left:
        for pid in list(left):
            if not _running(pid):  # exited: a zombie of ours is reaped now (reaped before it was one, it
                with contextlib.suppress(ChildProcessError):  # stayed one); not ours: its parent or init's
                    os.waitpid(pid, os.WNOHANG)
                left.discard(pid)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return sorted(left)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has: it holds no files)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


_SWEPT: set[str] = set()  # the temp folders already swept by this process

#: The file in a browser's folder that its process holds locked (``flock``) while the folder is in
#: use: the kernel lets go of it when the process ends, however it ends (``kill -9`` too).
_OWNER_LOCK = ".agentroute-owner"


def _own_folder() -> tuple[str, int | None]:
    """A new browser folder (``$TMPDIR/agentroute-<pid>-*``) and the descriptor of its owner lock,
    held until :func:`os.close` (POSIX; elsewhere ``None``); the lock is taken before the file gets
    its name, so a sweep never finds it unlocked while its folder is in use."""
    folder = tempfile.mkdtemp(prefix=f"agentroute-{os.getpid()}-")
    if os.name != "posix":
        return folder, None
    import fcntl

    making = os.path.join(folder, _OWNER_LOCK + ".new")
    fd = os.open(making, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)  # not inherited by Chromium
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(making, os.path.join(folder, _OWNER_LOCK))
    return folder, fd


def _remove_left_behind(tmp: str) -> list[str]:
    """Remove the browser folders in ``tmp`` (``agentroute-<pid>-*``) whose owner lock no process
    holds (a ``kill -9`` or a crash gave the owner no chance to remove it), killing any Chromium
    still running in one; once per ``tmp`` a process. The lock, not the pid in the name, says
    whether the owner lives: a pid may be reused, and a process of another pid namespace sharing
    ``tmp`` (a container) is not in this /proc. A folder without the lock file (being made) and
    another user's are left as they are. Returns the folders removed. POSIX (``flock``)."""
    if tmp in _SWEPT or os.name != "posix":
        return []
    import fcntl

    _SWEPT.add(tmp)
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(tmp):
            if re.match(r"agentroute-\d+-", entry.name) is None or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():  # another user's: not ours to remove
                continue
            try:
                fd = os.open(os.path.join(entry.path, _OWNER_LOCK), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: its owner lives (or sweeps it now)
            except OSError:
                os.close(fd)
                continue
            try:
                _kill_strays(entry.path)
                _remove(entry.path, seconds=1.0)
            finally:
                os.close(fd)
            removed.append(entry.path)
    if removed:
        log.info("removed %d browser folders left in %s by processes that are gone", len(removed), tmp)
    return removed


_TASK_PAGE_HINT = "(is run web --miniwob-url the base URL of MiniWoB++ task pages?)"


def _env_class(
    chrome: str,
    driver: str,
    flags: list[str],
    page_load_s: float,
    starting: Callable[[Any], None] = lambda instance: None,
) -> type:
    """A MiniWoB environment whose Selenium instance runs the given Chromium with ``flags``;
    ``starting(instance)`` is called as each instance starts its browser (before its page loads)."""
    from miniwob.environment import MiniWoBEnvironment
    from miniwob.selenium_instance import SeleniumInstance
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.options import BaseOptions
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    class _Service(Service):
        """Selenium's chromedriver service, whose start stops waiting for the driver's port once the
        driver has exited with any status, or its browser was abandoned (a stop killed it). Selenium
        waits on an exit status 0 (~32 s), and 0 is what a status reaped elsewhere reads as: the
        stop's own sweep (:func:`_kill_strays`) reaps the chromedriver it kills."""

        instance: _Instance | None = None

        def send_remote_shutdown_command(self) -> None:
            """Selenium's, with the request sent directly (its ``urlopen`` went through an environment's
            proxy, which answered for chromedriver, or held each close for its 10 s timeout)."""
            try:
                opener_for(self.service_url).open(f"{self.service_url}/shutdown", timeout=10).close()
            except (OSError, ValueError):  # URLError and a timeout are OSErrors
                return
            for _ in range(30):
                if not self.is_connectable():
                    break
                time.sleep(1)

        def assert_process_still_running(self) -> None:
            code = self.process.poll()
            if code is not None or (self.instance is not None and self.instance._abandoned):
                raise WebDriverException(
                    f"chromedriver {self.path} exited while it started"
                    + (f" (status {code})" if code else "")
                )

    class _Instance(SeleniumInstance):
        _tmp: str | None = None
        _owner: int | None = None  # the descriptor holding the folder's owner lock
        _service: Any = None  # chromedriver's, once it is started (before Selenium's driver is up)
        _killed: list[int] = []  # the processes :meth:`MiniWoBSession.abandon` killed, reaped by close
        _abandoned = False  # killed while starting (Ctrl-C during the page load): no quit, no page

        def create_driver(self) -> None:  # miniwob's, with our binaries and flags
            # Chromium's temporary files (its profile, its singleton socket) go to a folder of this
            # browser's own, removed when it closes: a killed Chromium otherwise leaves them in /tmp
            _remove_left_behind(tempfile.gettempdir())
            self._tmp, self._owner = _own_folder()
            starting(self)
            probe = TaskPageProbe(self.url)  # a 404 fails at once, not after the 10 s wait below

            def no_task_page() -> None:  # the probe's answer is read, never waited for
                if probe.missing:
                    raise PageLoadError(
                        f"the page {self.url} showed no MiniWoB task: {probe.missing} {_TASK_PAGE_HINT}"
                    )

            try:
                no_task_page()  # a file:// page's file is known missing before any browser starts
                options = webdriver.ChromeOptions()
                for flag in flags:
                    options.add_argument(flag)
                if not self.headless:
                    options.add_argument("--app=" + self.url)
                options.binary_location = chrome
                # a page's alert, confirm or prompt is answered OK, as a user would, and the episode
                # goes on (chromedriver's default dismisses it and fails the next command)
                options.unhandled_prompt_behavior = "accept"
                # the calls to the local chromedriver never go through an http_proxy of the environment
                # (a corporate machine's, with no no_proxy for loopback: the proxy's page was the error);
                # BaseOptions', as ArgOptions' warns it is deprecated
                BaseOptions.ignore_local_proxy_environment_variables(options)
                service = _Service(executable_path=driver, env={**os.environ, "TMPDIR": self._tmp})
                service.instance = self
                self._service = service
                self.driver = webdriver.Chrome(service=service, options=options)
                self.driver.implicitly_wait(5)
                self.driver.set_page_load_timeout(page_load_s)  # Selenium's default: 300 s
                if self._abandoned:  # killed before its chromedriver was up: nothing else to wait for
                    raise BrowserCrashedError("the browser was stopped while it started")
                if self.headless:
                    no_task_page()
                    try:
                        self.driver.get(self.url)
                    except TimeoutException:
                        raise PageLoadError(
                            f"the task page {self.url} did not load within {page_load_s:g} s "
                            f"(run web --page-load-timeout or ${PAGE_LOAD_ENV} sets the limit)"
                        ) from None
                    except WebDriverException as exc:  # refused, unknown host: Chromium's net::ERR_…
                        if self._abandoned or "net::ERR_" not in str(exc):
                            raise
                        raise PageLoadError(
                            f"the task page {self.url} could not be loaded: {_brief(exc)}"
                        ) from None
                start_screen = ec.element_to_be_clickable((By.ID, self.SYNC_SCREEN_ID))

                def task_screen(driver: Any) -> Any:
                    no_task_page()
                    return start_screen(driver)

                try:
                    WebDriverWait(self.driver, 10).until(task_screen)
                except TimeoutException:  # another site's page (or Chromium's certificate warning)
                    why = (
                        f": its server's certificate is not trusted ({probe.untrusted}; give the server "
                        "one this machine trusts, or use http://)"
                        if probe.untrusted
                        else f" {_TASK_PAGE_HINT}"
                    )
                    raise PageLoadError(
                        f"the page {self.url} showed no MiniWoB task within 10 s{why}"
                    ) from None
                self.inner_width, self.inner_height = self.driver.execute_script(
                    "return [window.innerWidth, window.innerHeight];"
                )
            except BaseException:  # a browser that did not start (or Ctrl-C) leaves nothing behind
                self.close()
                raise

        def close(self) -> None:
            """Quit the driver (and its Chromium) and remove the temporary folder, once: a second
            close (an abandon's thread and the failed start it ended both close) waits for the
            first. Quiet when the browser is already dead (miniwob's own ``close`` prints a traceback
            then, e.g. after a Ctrl-C that reached Chromium too)."""
            with _CLOSING:
                closed = self.__dict__.get("_closed")
                if closed is None:
                    self._closed = threading.Event()
            if closed is not None:
                closed.wait(_CLOSE_WAIT_S)
                return
            try:
                driver = getattr(self, "driver", None)
                if driver is not None and not self._abandoned:  # quit would retry a killed driver's port
                    with contextlib.suppress(Exception):
                        driver.quit()  # stops chromedriver even when the shutdown request fails
                self.died = True
            finally:
                if self._killed:
                    _wait_gone(self._killed)
                if self._tmp is not None:
                    # strays are expected after an abandon, a kill while starting, or a signal that
                    # reached the whole job (Ctrl-C): no warning then
                    expected = (
                        self._killed or self._abandoned or _SIGNALLED or _stopped_by_signal(self._service)
                    )
                    _kill_strays(self._tmp, warn=not expected)
                    _remove(self._tmp)
                    self._tmp = None
                if self._owner is not None:
                    os.close(self._owner)
                    self._owner = None
                self._closed.set()

    class _Env(MiniWoBEnvironment):
        def _hard_reset_instance(self) -> None:
            if getattr(self, "instance", None):
                self.instance.close()
            self.instance: SeleniumInstance = _Instance(index=0, **self.instance_kwargs)
            self.instance.start()
            self.instance.wait()

    return _Env


def _brief(exc: BaseException) -> str:
    """``Type: message`` on one line, without what Selenium appends: chromedriver's stack trace (20
    lines of addresses), the browser's version and the link to its troubleshooting page."""
    text = str(exc).split("Stacktrace:", 1)[0]
    text = re.split(r";?\s*For documentation on this error", text, maxsplit=1)[0]
    text = re.sub(r"\s*\(Session info: [^)]*\)", "", text)
    text = " ".join(text.replace("Message:", "").split())
    return f"{type(exc).__name__}: {text}"


#: Sessions with a browser up: closed at interpreter exit, so that a program stopped by Ctrl-C
#: before it called ``close`` leaves no Chromium temp folder (a profile of a few MB) behind.
_LIVE: weakref.WeakSet[MiniWoBSession] = weakref.WeakSet()


@atexit.register
def _close_live_sessions() -> None:
    for session in list(_LIVE):
        with contextlib.suppress(Exception):
            session.shutdown()


class MiniWoBSession:
    """One browser on one MiniWoB task, reused across episodes (``reset(seed)`` per episode).

    Args:
        task: a MiniWoB task name (``click-test``); :func:`available_tasks` lists them.
        headless: run Chromium without a window (``False`` needs a display).
        max_elements: elements kept in a :class:`Page`.
        page_load_timeout_s: seconds the task page may take to load (:func:`page_load_timeout`:
            default ``$AGENTROUTE_WEB_PAGE_LOAD_S``, else 30).
        miniwob_url: the base URL of a MiniWoB++ server whose ``<URL>/<task>.html`` are the task
            pages (:func:`check_miniwob_url`); default: the pages the ``miniwob`` package ships.
    """

    def __init__(
        self,
        task: str,
        *,
        headless: bool = True,
        max_elements: int = 80,
        page_load_timeout_s: float | None = None,
        miniwob_url: str | None = None,
    ):
        self.task, self.headless, self.max_elements = task, headless, max_elements
        self.page_load_timeout_s = page_load_timeout(page_load_timeout_s)
        self.miniwob_url = check_miniwob_url(miniwob_url) if miniwob_url is not None else None
        self._env: Any = None
        self.page: Page | None = None
        self._lock = threading.Lock()  # open and close come from worker threads
        self._shut = False
        self._starting: Any = None  # the Selenium instance starting its browser now (in open or reset)
        self._cancelled: threading.Event | None = None  # set: the start under way was cancelled

    def open(self) -> MiniWoBSession:
        """Start the browser (once); :class:`BrowserCrashedError` when it cannot start or after :meth:`shutdown`."""
        with self._lock:
            if self._shut:
                raise BrowserCrashedError(f"the browser of {self.task!r} was shut down")
            if self._env is None:
                self._env = self._start_env()
                _LIVE.add(self)
            env = self._env
        # checked once the lock is released: a cancel of :meth:`starting` that found it held left the
        # browser to this start (one that found it free abandoned the browser itself)
        if self._cancelled is not None and self._cancelled.is_set():
            self._lost(env)
            raise BrowserCrashedError(f"the browser of {self.task!r} was stopped while it started")
        return self

    def _start_env(self) -> Any:
        """A MiniWoB environment with its browser up on the task page (the caller holds the lock)."""
        _import_miniwob()
        check_tasks([self.task])
        chrome, driver = find_chromium()
        flags = chromium_flags(headless=self.headless)
        env_class = _env_class(chrome, driver, flags, self.page_load_timeout_s, self._started)
        try:
            return env_class(
                subdomain=self.task,
                render_mode=None if self.headless else "human",
                base_url=self.miniwob_url,
            )
        except PageLoadError as exc:  # Chromium started: the page is what failed
            raise BrowserCrashedError(str(exc)) from exc
        except Exception as exc:
            raise BrowserCrashedError(f"could not start Chromium for {self.task!r}: {_brief(exc)}") from exc
        finally:
            self._starting = None

    def _started(self, instance: Any) -> None:
        """A browser of this session starts (``open``, or MiniWoB restarting a dead one in ``reset``);
        after a :meth:`shutdown`, or when its :meth:`starting` was cancelled, it is stopped at once."""
        self._starting = instance
        if self._shut or (self._cancelled is not None and self._cancelled.is_set()):
            self._stop_starting()

    def _stop_starting(self) -> None:
        """Kill the browser being started, if any (its chromedriver and Chromium, found by its
        folder): its page load fails at once, instead of at the page-load limit, and its start
        closes it and removes its folder."""
        instance = self._starting
        if instance is None:
            return
        instance._abandoned = True
        if instance._tmp:
            _kill_strays(instance._tmp, warn=False)
        log.info("stopped the browser of %r while it started", self.task)

    async def starting(self, call: Callable[[], T]) -> T:
        """``call()`` — an :meth:`open` or :meth:`reset`, which may start the browser and load the task
        page — in a worker thread. Cancelled (Ctrl-C, the caller's cancel), the browser is killed, the
        one being started too, so that the thread ends at once, not at the page-load limit; a start
        not yet at its browser stops there. The event loop never waits for the start's lock."""
        cancelled = threading.Event()

        def start() -> T:
            if cancelled.is_set():  # cancelled before this thread ran: nothing to start
                raise BrowserCrashedError(f"the browser of {self.task!r} was stopped before it started")
            self._cancelled = cancelled
            try:
                return call()
            finally:
                if self._cancelled is cancelled:  # a later start's own stays
                    self._cancelled = None

        try:
            return await asyncio.to_thread(start)
        except asyncio.CancelledError:
            cancelled.set()
            self._stop_starting()
            if self._lock.acquire(blocking=False):  # else the start under way stops its own browser
                self._lock.release()
                self.abandon()
            raise

    def stopped(self, within_s: float = 0.0) -> bool:
        """Whether a stop, not a fault, is ending this session's browser: Ctrl-C or SIGTERM reached
        the program (:func:`note_stop_signal`), its :meth:`starting` under way was cancelled, or it
        was shut down. Waits up to ``within_s`` for one: a signal kills the browser at once, and the
        program's handler notes it a moment later."""
        deadline = time.monotonic() + within_s
        while True:
            cancelled = self._cancelled
            if _SIGNALLED or self._shut or (cancelled is not None and cancelled.is_set()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        """Whether a browser was started and not lost since (it may still have died unnoticed)."""
        return self._env is not None

    @property
    def driver(self) -> Any:
        return self._env.instance.driver if self._env is not None else None

    def reset(self, seed: int) -> Page:
        """Start a new episode of the task with ``seed``; returns the first page."""
        self.open()
        try:
            obs, _ = self._env.reset(seed=seed, options={"record_screenshots": False})
        except Exception as exc:
            reason = self._unanswered(exc) or _brief(exc)
            self._lost()
            raise BrowserCrashedError(f"reset of {self.task!r} failed: {reason}") from exc
        finally:
            self._starting = None  # MiniWoB restarted a dead browser here: it is up (or gone)
        self.page = page_from_observation(obs, max_elements=self.max_elements)
        return self.page

    def execute(self, action: Action) -> Outcome:
        """Run ``action`` in the browser; ``done()`` sends nothing and ends the episode."""
        if self._env is None:
            raise BrowserCrashedError("the browser is not running")
        if action.kind == "done":
            return Outcome(None, 0.0, True, 0.0, "agent declared done")
        from miniwob.action import ActionTypes

        env = self._env
        try:
            if action.kind == "click":
                act = env.create_action(ActionTypes.CLICK_ELEMENT, ref=action.ref)
            elif action.kind == "type":
                act = env.create_action(
                    ActionTypes.FOCUS_ELEMENT_AND_TYPE_TEXT, ref=action.ref, text=action.text
                )
            else:
                key = env.action_space_config.allowed_keys.index(f"<{action.key}>")
                act = env.create_action(ActionTypes.PRESS_KEY, key=key)
            obs, reward, done, _, info = env.step(act)
        except Exception as exc:
            if env is not self._env:  # abandoned while it ran (a deadline, Ctrl-C): killed, being closed
                raise BrowserCrashedError(
                    f"{action} on {self.task!r} was cut off: the browser was stopped"
                ) from exc
            reason = self._left_task(exc) or self._unanswered(exc) or _brief(exc)
            self._lost(env)
            raise BrowserCrashedError(f"{action} on {self.task!r} failed: {reason}") from exc
        page = None if done else page_from_observation(obs, max_elements=self.max_elements)
        self.page = page
        return Outcome(
            page,
            float(reward) if done else 0.0,
            bool(done),
            float(info.get("raw_reward") or 0.0),
            str(info.get("reason") or ""),
        )

    async def off_loop(self, call: Callable[[], T], what: str) -> T:
        """``call()`` (browser commands) in a worker thread, so that a hung page blocks neither the
        event loop nor the other episodes. Cancelled (a task's deadline, Ctrl-C) or still running
        :data:`COMMAND_GRACE_S` past the page-load limit, the browser is abandoned: its chromedriver
        and Chromium are killed at once (the thread's command then fails), and the next episode
        starts a fresh one."""
        env = self._env
        limit = self.page_load_timeout_s + COMMAND_GRACE_S
        try:
            async with asyncio.timeout(
                limit
            ):  # not wait_for: on 3.11 it drops a cancel landing as the call fails
                return await asyncio.to_thread(call)
        except TimeoutError:
            self.abandon(env)
            raise BrowserCrashedError(
                f"{what} on {self.task!r} failed: the browser did not answer within {limit:g} s "
                f"(run web --page-load-timeout or ${PAGE_LOAD_ENV} sets the limit, plus {COMMAND_GRACE_S:g} s)"
            ) from None
        except asyncio.CancelledError:
            self.abandon(env)
            raise

    def abandon(self, env: Any = None) -> None:
        """Kill the browser of ``env`` (default: the current one) now, without asking it anything —
        ``quit`` would wait behind a hung command — and forget it, so that the next :meth:`open`
        starts a fresh one; its folder is removed in a thread of its own."""
        with self._lock:
            env = self._env if env is None else env
            if env is not None and self._env is env:
                self._env = None
        instance = getattr(env, "instance", None)
        folder = getattr(instance, "_tmp", None)
        if instance is None or not folder:
            return
        # chromedriver killed now fails the hung command at once; a thread of its own then kills
        # Chromium (run with TMPDIR=folder), reaps chromedriver and removes the folder, without the
        # `quit` that would retry a dead port. The interpreter waits for that thread at exit.
        process = getattr(getattr(getattr(instance, "driver", None), "service", None), "process", None)
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
            instance._killed = [process.pid]
        instance.driver = None

        def close() -> None:  # Chromium first: env.close waits for the hung command to fail
            _kill_strays(folder, warn=False)
            env.close()

        threading.Thread(target=close, name=f"close-browser-{self.task}").start()
        log.info("killed the chromedriver of %r", self.task)

    def screenshot(self, path: str | Path) -> Path | None:
        """Save a PNG of the page now; None when the browser cannot take one."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return path if self.driver is not None and self.driver.save_screenshot(str(path)) else None
        except Exception as exc:  # a full disk, a folder gone: the episode goes on without its picture
            log.warning("screenshot to %s failed: %s", path, exc)
            return None

    def _left_task(self, exc: Exception) -> str | None:
        """Why a page's script failed when the page is no longer the task's (a link or a script took
        the tab elsewhere: MiniWoB's ``core`` is gone); None otherwise."""
        if type(exc).__name__ != "JavascriptException":  # a dead browser: do not ask it anything
            return None
        try:
            url, task_url = str(self.driver.current_url), str(self._env.instance.url)
        except Exception:
            return None
        return None if url.startswith(task_url) else f"the page left the task (now at {url[:100]})"

    def _unanswered(self, exc: Exception) -> str | None:
        """Why a command timed out when the page kept its renderer busy past the limit (a huge DOM,
        a script that loops): chromedriver waits for the renderer as long as for a page load."""
        if "Timed out receiving message from renderer" not in str(exc):
            return None
        return (
            f"the page did not answer within {self.page_load_timeout_s:g} s (a huge or busy page; "
            f"run web --page-load-timeout or ${PAGE_LOAD_ENV} sets the limit)"
        )

    def _lost(self, env: Any = None) -> None:
        """Close ``env`` (default: the current browser), forgetting it when it is the current one,
        so that the next episode starts a fresh one."""
        with self._lock:  # a browser being started is closed once it is up
            if env is None:
                env = self._env
            if self._env is env:
                self._env = None
        if env is not None:
            try:
                env.close()
            except Exception:  # already dead
                pass

    def close(self) -> None:
        """Close the browser; the next :meth:`open` (or :meth:`reset`) starts a fresh one."""
        self._lost()

    def shutdown(self) -> None:
        """Close the browser for good: an :meth:`open` still running in another thread (an episode
        interrupted by Ctrl-C) finishes, then its browser is closed, and no later one starts."""
        self._shut = True
        self._stop_starting()  # else the close waits for its start, up to the page-load limit
        self._lost()

    def __enter__(self) -> MiniWoBSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

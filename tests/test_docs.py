"""
The documentation site: ``mkdocs build --strict`` passes (any warning fails it: a broken link, a missing
page, an unresolved API object), the built site works opened from disk and fetches nothing from the
network when viewed, the API reference documents EXPO's arguments, the README links every page, the
code blocks of Getting started and of Your own environment and data run, and the README demo writes its
learning-curve plot.
"""

import html
import importlib.util
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


class _Loader(yaml.SafeLoader):
    """Should mkdocs.yml name a Python object (``!!python/name:...``), read the tag as plain text."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)


def nav_pages(nav=None):
    """Every Markdown file of mkdocs.yml's nav."""
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)["nav"] if nav is None else nav
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            yield from nav_pages(value)
        else:
            yield value


def text_of(path: Path) -> str:
    """The visible text of a built page's article, whitespace collapsed."""
    page = path.read_text()
    article = page[page.index("<article") : page.index("</article>")]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", article)))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def built_page(site: Path, page: str) -> Path:
    """The HTML file of a Markdown page: ``page.html`` (mkdocs.yml's ``use_directory_urls: false``)."""
    return site / (page[: -len(".md")] + ".html")


def test_every_page_of_the_nav_is_built(site):
    pages = list(nav_pages())
    assert len(pages) >= 20 and all((DOCS / page).exists() for page in pages)
    for page in pages:
        assert built_page(site, page).exists(), page


def test_api_page_documents_expos_arguments(site):
    text = text_of(built_page(site, "api/expo.md"))
    parameters = text[text.index("Parameters") :]
    for name, words in [
        ("edit_scale", "the largest edit of an action coordinate"),
        ("n_base_samples", "base-policy samples per state"),
        ("offline_dataset", "offline data mixed into every batch"),
        ("gradient_steps", "UTD ratio"),
    ]:
        assert re.search(rf"\b{name}\b .{{0,80}}{re.escape(words)}", parameters), name
    for name in ("pretrain", "learn", "save_replay_buffer"):
        assert re.search(rf"\b{name}\b", text), name


def test_api_reference_covers_the_public_names(site):
    expected = {
        "expo": ["EXPO"],
        "policies": ["ExpoPolicy", "MultiInputPolicy"],
        "buffers": ["OfflineReplayBuffer", "DictOfflineReplayBuffer"],
        "data": ["load_minari", "load_d4rl_hdf5", "load_robomimic_hdf5", "OfflineTransitions", "load_offline_dataset"],
        "tasks": ["prepare_offline_dataset", "make_antmaze_env", "make_robomimic_env"],
        "wrappers": ["IsSuccessInfo", "TerminateOnSuccess"],
        "evaluation": ["evaluate_success_rate", "BasePolicyActor"],
        "checkpoints": ["CheckpointCallback", "resume"],
        "rlpd": ["RLPD"],
        "zoo": ["ExpoExperimentManager", "shared_storage", "SharedStudyMaxTrials", "best_params_entry"],
    }
    for page, names in expected.items():
        text = text_of(built_page(site, f"api/{page}.md"))
        for name in names:
            assert re.search(rf"\b{name}\b", text), f"{name} missing from api/{page}"


def test_results_page_shows_the_benchmark_plots(site):
    page = built_page(site, "results.md").read_text()
    for plot in sorted((ROOT / "benchmarks" / "learning" / "results").glob("*.png")):
        assert f"img/learning/{plot.name}" in page
        assert (site / "img" / "learning" / plot.name).read_bytes() == plot.read_bytes()


def test_readme_links_every_page():
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", readme))
    assert all((ROOT / link).exists() for link in linked), linked
    top_level = {f"docs/{page}" for page in nav_pages() if not page.startswith("api/") or page == "api/index.md"}
    assert top_level <= linked, top_level - linked


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_getting_started_code_runs(tmp_path):
    """The Python blocks of Getting started, in order, in one fresh process (data built into a temporary folder)."""
    pytest.importorskip("minari")
    pytest.importorskip("gymnasium_robotics")
    blocks = python_blocks((DOCS / "getting-started.md").read_text())
    assert len(blocks) == 2
    script = tmp_path / "getting_started.py"
    script.write_text("\n\n".join(blocks))
    env = dict(os.environ, HF_HUB_OFFLINE="1", MINARI_DATASETS_PATH=str(tmp_path / "minari"), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "action:" in result.stdout and re.search(r"success rate: [01]\.\d+", result.stdout)
    assert (tmp_path / "expo_pendulum.zip").exists()


class _Resources(HTMLParser):
    """What a page loads when it is viewed: the URLs of its scripts, styles, images and frames, and its CSS."""

    URL_ATTRIBUTES = {
        "script": ["src"],
        "img": ["src", "srcset"],
        "source": ["src", "srcset"],
        "iframe": ["src"],
        "frame": ["src"],
        "embed": ["src"],
        "video": ["src", "poster"],
        "audio": ["src"],
        "track": ["src"],
        "object": ["data"],
        "input": ["src"],
        "image": ["href", "xlink:href"],  # inline SVG
        "use": ["href", "xlink:href"],
    }
    NOT_LOADED = {"canonical", "alternate", "author", "license", "help", "next", "prev", "search"}  # <link rel=...>

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.css: list[str] = []
        self.classes: set[str] = set()
        self.links: list[str] = []  # <a href>: followed only when clicked
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.classes.update((attributes.get("class") or "").split())
        if attributes.get("style"):
            self.css.append(attributes["style"])
        for name in self.URL_ATTRIBUTES.get(tag, []):
            if attributes.get(name):
                self.urls += [part.split()[0] for part in attributes[name].split(",") if part.strip()]
        if tag == "link" and attributes.get("href"):
            if not set((attributes.get("rel") or "").lower().split()) <= self.NOT_LOADED:
                self.urls.append(attributes["href"])
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def page_resources(path: Path) -> _Resources:
    parser = _Resources()
    parser.feed(path.read_text())
    return parser


def is_remote(url: str) -> bool:
    return url.startswith("//") or urlsplit(url).scheme in ("http", "https", "ftp", "ws", "wss")


REMOTE_CSS = re.compile(r"""(url\(\s*['"]?\s*(https?:)?//|@import\s+['"]?(https?:)?//)""", re.I)


def test_site_needs_no_network_when_viewed(site):
    """No page, stylesheet or SVG of the built site loads a script, style, font or image from the network
    (a CDN, Google Fonts): it displays the same offline. Plain hyperlinks (``<a href>``) may point anywhere."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 20
    for page in pages:
        resources = page_resources(page)
        assert not [url for url in resources.urls if is_remote(url)], page.relative_to(site)
        assert not [css for css in resources.css if REMOTE_CSS.search(css)], page.relative_to(site)
        # mkdocs-material loads mermaid.js from a CDN for any element of class "mermaid".
        assert "mermaid" not in resources.classes, page.relative_to(site)
    for stylesheet in site.rglob("*.css"):
        assert not REMOTE_CSS.search(stylesheet.read_text()), stylesheet.relative_to(site)
    for drawing in site.rglob("*.svg"):
        text = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", drawing.read_text())  # namespace names, never fetched
        assert not re.search(r"(href|src)\s*=\s*[\"'](https?:)?//", text) and not REMOTE_CSS.search(text), drawing


def test_site_works_opened_from_disk(site):
    """Every link between the site's own files names an existing file (``page.html``, never a folder, which a
    browser shows as a listing from disk), relative to the page: the site works from file:// as from a server."""
    pages = sorted(set(site.rglob("*.html")) - {site / "404.html"})  # the 404 page is a web server's
    checked = 0
    for page in pages:
        resources = page_resources(page)
        for url in resources.urls + resources.links:
            parts = urlsplit(url)
            if is_remote(url) or parts.scheme in ("mailto", "data", "javascript") or not parts.path:
                continue
            assert not parts.path.startswith("/"), f"{page.relative_to(site)}: absolute link {url}"
            target = (page.parent / parts.path).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: {url} is not a file of the site"
            checked += 1
    assert checked > 500


def test_how_expo_works_draws_its_diagram_without_a_script(site):
    page = built_page(site, "how-expo-works.md").read_text()
    assert "img/expo-flow.svg" in page and (site / "img" / "expo-flow.svg").exists()
    drawing = (DOCS / "img" / "expo-flow.svg").read_text()
    for label in ("base policy", "edit policy", "critic ensemble", "OTF action", "replay buffer", "TD target"):
        assert label in drawing, label


# ---------------------------------------------------------------------------------- Your own environment and data

OWN_PAGE = DOCS / "own-env-and-data.md"


def fenced_blocks(markdown: str) -> list[tuple[str, str, str]]:
    """``(language, title, code)`` of every fenced code block (``title=""`` when it has none)."""
    return re.findall(r'^```(\w+)(?:[ \t]+title="([^"]*)")?[ \t]*\n(.*?)^```[ \t]*$', markdown, flags=re.S | re.M)


# The page's step counts are realistic (about 6 CPU-minutes in all); the test runs the same code with these
# substitutions, each of which must still occur in the page: every step count shorter, the code unchanged.
OWN_PAGE_SHORTER = {
    "learning_starts=500": "learning_starts=50",
    "model.learn(total_timesteps=3_000)": "model.learn(total_timesteps=100)",
    "model.pretrain(2_000)": "model.pretrain(20)",
    "model.learn(2_000": "model.learn(60",
    "n_episodes=20": "n_episodes=1",
    "eval_freq=1_000, n_eval_episodes=10": "eval_freq=50, n_eval_episodes=1",
}
OWN_PAGE_SHORTER_YAML = {"n_timesteps: 3000": "n_timesteps: 250", "learning_starts: 500": "learning_starts: 100"}
OWN_PAGE_SHORTER_COMMANDS = {"--eval-freq 1000 --eval-episodes 10": "--eval-freq 200 --eval-episodes 2", "-n 500": "-n 60"}


def shortened(code: str, substitutions: dict[str, str]) -> str:
    for page_text, test_text in substitutions.items():
        assert page_text in code, f"the page no longer has {page_text!r}: update the test's substitutions"
        code = code.replace(page_text, test_text)
    return code


def own_page_blocks() -> dict[str, list[tuple[str, str]]]:
    """The page's blocks by language, as ``(title, code)``, after checking that there are no others."""
    blocks: dict[str, list[tuple[str, str]]] = {}
    for language, title, code in fenced_blocks(OWN_PAGE.read_text()):
        blocks.setdefault(language, []).append((title, code))
    assert {language: len(found) for language, found in blocks.items()} == {"python": 5, "text": 1, "yaml": 1, "bash": 1}
    return blocks


def write_own_page_files(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """Write the page's files (its blocks with a ``title``, e.g. ``reach_env.py``) into ``folder``, shortened."""
    blocks = own_page_blocks()
    titled = {title: code for found in blocks.values() for title, code in found if title}
    assert set(titled) == {"reach_env.py", "reach.yml"}
    (folder / "reach_env.py").write_text(titled["reach_env.py"])
    (folder / "reach.yml").write_text(shortened(titled["reach.yml"], OWN_PAGE_SHORTER_YAML))
    return blocks


def own_page_environment(folder: Path) -> dict[str, str]:
    """No network, data in ``folder``, one thread, and this Python's scripts (``sb3-expo``) first on the PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return dict(os.environ, HF_HUB_OFFLINE="1", MINARI_DATASETS_PATH=str(folder / "minari"), OMP_NUM_THREADS="1", PATH=path)


def test_own_env_and_data_code_runs(tmp_path):
    """The Python blocks of Your own environment and data, in order, in one fresh process, next to the page's
    ``reach_env.py``, with the step counts of ``OWN_PAGE_SHORTER``."""
    pytest.importorskip("minari")
    blocks = write_own_page_files(tmp_path)
    script = tmp_path / "own_env_and_data.py"
    script.write_text(shortened("\n\n".join(code for title, code in blocks["python"] if not title), OWN_PAGE_SHORTER))
    env = own_page_environment(tmp_path)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    for line in ("online EXPO, success rate:", "Pendulum, untrained EXPO:", "imitation alone:", "fine-tuned online:"):
        assert re.search(rf"{re.escape(line)} [01]\.\d+", result.stdout), line
    assert re.search(r"^\d+ offline transitions$", result.stdout, flags=re.M)
    assert "reach/mixed-v0 : 100 episodes," in result.stdout
    assert (tmp_path / "minari" / "reach" / "mixed-v0").is_dir()
    assert (tmp_path / "expo_reach.zip").exists() and (tmp_path / "expo_reach_minari.zip").exists()


@pytest.mark.slow  # two sb3-expo processes (rl-zoo's imports), ~25 s
def test_own_env_and_data_commands_run(tmp_path):
    """The page's ``sb3-expo`` commands (train, then enjoy) with its ``reach_env.py`` and ``reach.yml``, shorter
    (``OWN_PAGE_SHORTER_YAML``, ``OWN_PAGE_SHORTER_COMMANDS``)."""
    pytest.importorskip("rl_zoo3")
    if not (Path(sys.executable).parent / "sb3-expo").exists():
        pytest.skip("the sb3-expo command is not installed next to this Python")
    blocks = write_own_page_files(tmp_path)
    [(_, commands)] = blocks["bash"]
    commands = shortened(commands, OWN_PAGE_SHORTER_COMMANDS).strip().splitlines()
    assert [command.split()[1:3] for command in commands] == [["sb3-expo", "train"], ["sb3-expo", "enjoy"]]
    env = own_page_environment(tmp_path)
    outputs = []
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, command + "\n" + result.stdout[-3000:] + result.stderr[-5000:]
        outputs.append(result.stdout)
    assert re.search(r"Success rate: \d+\.\d+%", outputs[0]) and re.search(r"Success rate: \d+\.\d+%", outputs[1])
    assert (tmp_path / "logs" / "expo" / "Reach-v0_1" / "Reach-v0.zip").exists()
    assert any((tmp_path / "logs" / "tensorboard" / "Reach-v0").rglob("events.out.tfevents.*"))


def test_own_env_and_data_shows_the_real_discrete_action_error():
    """The page quotes the error a Discrete action space gives: it is the one EXPO raises."""
    from sb3_expo import EXPO

    [(_, quoted)] = own_page_blocks()["text"]
    with pytest.raises(AssertionError) as error:
        EXPO("MlpPolicy", "CartPole-v1")
    assert quoted.strip() == f"AssertionError: {error.value}"


def test_index_lists_the_own_env_and_data_page():
    assert "(own-env-and-data.md)" in (DOCS / "index.md").read_text()


# ---------------------------------------------------------------------------------- the README demo's plot


def load_demo():
    spec = importlib.util.spec_from_file_location(
        "offline_to_online_pointmaze", ROOT / "examples" / "offline_to_online_pointmaze.py"
    )
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_demo_writes_its_learning_curve_png(tmp_path):
    """The demo's plot, on made-up numbers (the demo itself takes minutes): a PNG lands where it is asked to."""
    pytest.importorskip("matplotlib")
    demo = load_demo()
    episodes = demo.EpisodeSuccesses()
    for step, done, success in [(40, False, False), (120, True, False), (260, True, True), (300, False, False)]:
        episodes.num_timesteps = step
        episodes.locals = {"dones": np.array([done]), "infos": [{"is_success": success}]}
        episodes._on_step()
    assert episodes.episodes == [(120, False), (260, True)]
    evaluations = [
        ("untrained", 0, 0.0),
        ("offline EXPO (+2000 critic steps)", 0, 0.5),
        ("fine-tuned (300 env steps)", 300, 0.9),
    ]
    path = demo.plot_learning_curve(tmp_path / "runs" / "expo_pointmaze_success.png", episodes.episodes, evaluations, 0.4)
    assert path == tmp_path / "runs" / "expo_pointmaze_success.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert demo.plot_learning_curve(tmp_path / "empty.png", [], evaluations[:1], 0.0).exists()  # before any episode

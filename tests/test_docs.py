"""
The documentation site: ``mkdocs build --strict`` passes (any warning fails it: a broken link, a missing
page, an unresolved API object), the API reference documents EXPO's arguments, the README links every
page, and the Python code blocks of Getting started run.
"""

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


class _Loader(yaml.SafeLoader):
    """mkdocs.yml names a Python function (the mermaid fence): read the tag as plain text."""


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


def test_every_page_of_the_nav_is_built(site):
    pages = list(nav_pages())
    assert len(pages) >= 20 and all((DOCS / page).exists() for page in pages)
    for page in pages:
        built = site / (page[: -len(".md")] + "/index.html" if page != "index.md" else "index.html")
        built = site / "api" / "index.html" if page == "api/index.md" else built
        assert built.exists(), page


def test_api_page_documents_expos_arguments(site):
    text = text_of(site / "api" / "expo" / "index.html")
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
        text = text_of(site / "api" / page / "index.html")
        for name in names:
            assert re.search(rf"\b{name}\b", text), f"{name} missing from api/{page}"


def test_results_page_shows_the_benchmark_plots(site):
    page = (site / "results" / "index.html").read_text()
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

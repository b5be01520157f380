"""Hostile manifests (issue 15): `prism validate` and `prism run` refuse them fast, in bounded memory,
with one message naming the file, the field or the limit, and never a traceback.

Every case runs the real console script in a child process; time and peak RSS are the child's own
(measured by a small wrapper process whose only child it is), and the wrapper caps the child's address
space, so a regression fails the test instead of exhausting the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRISM = shutil.which("prism", path=str(Path(sys.executable).parent)) or "prism"

# Runs argv[2:] with an address-space cap of argv[1] bytes; prints its rc, wall seconds and peak RSS (KiB).
MEASURE = textwrap.dedent("""
    import resource, subprocess, sys, time
    cap = int(sys.argv[1])
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    start = time.monotonic()
    try:
        rc = subprocess.run(sys.argv[2:], preexec_fn=limit, timeout=30).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    took = time.monotonic() - start
    print(file=sys.stderr)
    print(rc, round(took, 2), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
""")


def measured(*args: str, cwd: Path = ROOT, cap_bytes: int = 3 * 1024**3, env: dict | None = None
             ) -> tuple[object, float, int, str, str]:
    """(rc, seconds, peak RSS in MiB, stdout, stderr) of `prism ARGS`."""
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(cap_bytes), PRISM, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)
    *stderr, last = proc.stderr.rstrip("\n").split("\n")
    rc, seconds, peak_kib = last.split()
    return (int(rc) if rc != "timeout" else rc), float(seconds), int(peak_kib) // 1024, proc.stdout, "\n".join(stderr)


def job_yaml(options: str = "{}", *, source: str = "/tmp", extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: prism.dev/v1alpha1
        kind: ExtractionJob
        metadata:
          name: hostile
        spec:
          source:
            uri: {source}
          extractors:
            - name: words
              kind: "python: tests.pipeline.plugins:Poisoned"
              options: {options}
          sink:
            qdrant:
              collection: hostile
        """) + extra


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: `width ** levels` strings (387 million here) in a few hundred bytes."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def bomb_in_options() -> str:
    body = textwrap.indent(billion_laughs(), "  ")
    return job_yaml("\n" + textwrap.indent(body, "        "))


# -- YAML bombs and limits --------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["top-level", "options"])
def test_validate_refuses_a_billion_laughs_fast_and_small(tmp_path, where):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs() if where == "top-level" else bomb_in_options())
    rc, seconds, peak_mib, _, err = measured("validate", str(bomb))
    assert rc == 1, err[-2000:]
    assert f"{bomb}: line " in err and "aliases" in err, err[-2000:]
    assert "Traceback" not in err
    assert seconds < 5 and peak_mib < 200, (seconds, peak_mib)


def test_run_refuses_a_billion_laughs_in_options_before_ray(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(bomb_in_options())
    rc, seconds, peak_mib, _, err = measured("run", "--state-dir", str(tmp_path / "state"), str(bomb))
    assert rc == 2, err[-2000:]
    assert f"{bomb}: line " in err and "aliases" in err and "Traceback" not in err, err[-2000:]
    assert seconds < 10 and peak_mib < 300, (seconds, peak_mib)


def test_validate_refuses_an_oversized_manifest_without_reading_it(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(job_yaml(extra="# " + "x" * 100 + "\n") + ("#" + "y" * 1000 + "\n") * 57_000)  # 57 MB
    rc, seconds, peak_mib, _, err = measured("validate", str(big))
    assert rc == 1 and f"{big}: 54.5 MiB is larger than a manifest may be (3 MiB" in err, err[-2000:]
    assert seconds < 5 and peak_mib < 100, (seconds, peak_mib)


@pytest.mark.parametrize(("levels", "message"), [
    (200, "line 11: nested more than 64 levels deep"),
    (50_000, "not valid YAML: while increasing flow level\nexceeded maximum nesting depth"),  # libyaml's own bound
])
def test_validate_refuses_deep_nesting(tmp_path, levels, message):
    deep = tmp_path / "deep.yaml"
    deep.write_text(job_yaml("[" * levels + "]" * levels))
    rc, seconds, _, _, err = measured("validate", str(deep))
    assert rc == 1 and f"{deep}: {message}" in err, err[-2000:]
    assert "Traceback" not in err and seconds < 5, (seconds, err[-2000:])


def test_validate_refuses_duplicate_keys_recursive_aliases_non_utf8_and_directories(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text(job_yaml().replace("  name: hostile\n", "  name: hostile\n  name: other\n"))
    loop = tmp_path / "loop.yaml"
    loop.write_text(job_yaml("&o {a: *o}"))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(job_yaml().replace("name: hostile", "name: caf\xe9").encode("latin-1"))
    folder = tmp_path / "jobs"
    folder.mkdir()
    rc, _, _, _, err = measured("validate", str(dup), str(loop), str(latin), str(folder))
    assert rc == 2  # a directory is a usage error; without it, invalid manifests exit 1
    assert measured("validate", str(dup), str(loop), str(latin))[0] == 1
    lines = err.splitlines()
    assert f"{dup}: line 5: duplicate key 'name' (first at line 4); YAML keeps only the last one, so remove or " \
           "rename one of them" in lines
    assert any(line.startswith(f"{loop}: line 11: an alias refers to the collection it is in") for line in lines), err
    assert f"{latin}: line 4: not UTF-8 (byte 0xe9 at offset 72); save the file as UTF-8" in lines
    assert f"{folder}: is a directory; give the manifest files in it (e.g. {folder}/*.yaml)" in lines
    assert "Traceback" not in err


def test_merge_keys_and_a_few_aliases_stay_valid(tmp_path):
    ok = tmp_path / "ok.yaml"
    ok.write_text(job_yaml("&opts {a: 1}", extra="---\n" + job_yaml("{<<: *shared, b: 2}").replace(
        "metadata:", "x-shared: &shared {a: 1, c: [1, 2]}\nmetadata:")))
    proc = subprocess.run([PRISM, "validate", str(ok)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    # x-shared is not a field of an ExtractionJob: the anchor holder is refused, its alias is not.
    assert f"{ok}[0]: ExtractionJob hostile is valid" in proc.stdout, proc.stderr
    assert "x-shared" in proc.stderr and "alias" not in proc.stderr, proc.stderr


# -- what `prism run` would fail on, caught before Ray starts (`validate --for local`) -----------------------

PLUGIN_MODULES = {
    "needs_dep.py": "import prism_missing_dependency  # noqa\n",
    "broken_syntax.py": "def f(:\n",
    "boom_on_import.py": "raise RuntimeError('needs a GPU at import')\n",
    "ctor_raises.py": textwrap.dedent("""\
        from prism_pipeline.extractors import Extractor, Payload

        class Bad(Extractor):
            modalities = frozenset({"text"})
            output = Payload()

            def __init__(self, spec):
                raise RuntimeError("cannot start")
        """),
}


def manifest(extractor: dict | None = None, **spec) -> str:
    import yaml

    body = {"source": {"uri": "/tmp"},
            "extractors": [{"name": "words", "kind": "python: tests.pipeline.plugins:Poisoned", **(extractor or {})}],
            "sink": {"qdrant": {"collection": "hostile"}}, **spec}
    return yaml.safe_dump({"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob",
                           "metadata": {"name": "hostile"}, "spec": body}, sort_keys=False)


def local_cases(media: Path) -> dict[str, tuple[str, str]]:
    """name -> (manifest, a line `prism validate --for local` prints about it)."""
    src = {"uri": str(media)}
    return {
        "no-module": (manifest({"kind": "python: prism_no_such_plugin:X"}, source=src),
                      "spec.extractors[0].kind: cannot import plug-in module 'prism_no_such_plugin': no module "
                      "named 'prism_no_such_plugin'; install it or put its folder on PYTHONPATH"),
        "missing-dependency": (manifest({"kind": "python: needs_dep:X"}, source=src),
                               "spec.extractors[0].kind: plug-in module 'needs_dep' imports "
                               "'prism_missing_dependency', which is not installed; install it"),
        "syntax-error": (manifest({"kind": "python: broken_syntax:X"}, source=src),
                         "spec.extractors[0].kind: plug-in module 'broken_syntax' does not compile: "
                         "SyntaxError: invalid syntax (broken_syntax.py, line 1); fix the module"),
        "import-raises": (manifest({"kind": "python: boom_on_import:X"}, source=src),
                          "spec.extractors[0].kind: plug-in module 'boom_on_import' failed while importing: "
                          "RuntimeError: needs a GPU at import; fix the module"),
        "no-class": (manifest({"kind": "python: tests.pipeline.plugins:Nope"}, source=src),
                     "spec.extractors[0].kind: module 'tests.pipeline.plugins' has no class 'Nope'"),
        "not-an-extractor": (manifest({"kind": "python: tests.pipeline.plugins:Path"}, source=src),
                             "spec.extractors[0].kind: tests.pipeline.plugins:Path must be a subclass of "
                             "prism_pipeline.extractors.Extractor"),
        "constructor-raises": (manifest({"kind": "python: ctor_raises:Bad"}, source=src),
                               "spec.extractors[0]: plug-in ctor_raises:Bad failed to start: RuntimeError: "
                               "cannot start"),
        "option-type": (manifest({"kind": "ocr", "options": {"minChars": "two"}}, source=src),
                        "spec.extractors[0]: extractor 'words': options.minChars must be int (got 'two')"),
        "missing-file-model": (manifest({"kind": "image-embedding", "model": "file:///no/such/model"}, source=src),
                               "spec.extractors[0]: extractor 'words' model: /no/such/model does not exist on "
                               "this worker; mount the volume holding the model or fix the path"),
        "uncached-model": (manifest({"kind": "caption", "model": "hf://prism-test/not-cached"}, source=src),
                           "spec.extractors[0]: extractor 'words' model: hf://prism-test/not-cached is not in the "
                           "model cache"),
        "bad-glob": (manifest(source={**src, "include": ["**/*.txt", "[z-a]*"]}),
                     "spec.source.include[1]: '[z-a]*' is not a valid glob (bad character range z-a); "
                     "write a range low-high, e.g. [a-z]"),
        "missing-source": (manifest(source={"uri": str(media / "gone")}),
                           f"spec.source.uri: '{media / 'gone'}' does not exist (resolved to {media / 'gone'}); "
                           "point it at a directory or file that this process can read"),
        "matches-nothing": (manifest(source={**src, "include": ["**/*.txt", "**/*.pdf"]}),
                            f"warning: spec.source.include[1]: '**/*.pdf' matches no file under {media}"),
        "too-many-actors": (manifest({"concurrency": {"min": 500, "max": 500}}, source=src),
                            "spec.extractors[0].concurrency.min: 500 actors of extractor 'words' need 500 CPUs "),
        "suspended": (manifest(source=src, suspend=True),
                      "spec.suspend: is true, and `prism run` does not run a suspended job; remove spec.suspend "
                      "(or set it to false) to run it"),
    }


def test_validate_for_local_names_what_prism_run_would_fail_on(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("hello")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name, code in PLUGIN_MODULES.items():
        (plugins / name).write_text(code)
    cases = local_cases(media)
    files = []
    for name, (text, _) in cases.items():
        (tmp_path / f"{name}.yaml").write_text(text)
        files.append(str(tmp_path / f"{name}.yaml"))
    env = {**os.environ, "PYTHONPATH": f"{plugins}:{ROOT}", "PRISM_MODEL_CACHE": str(tmp_path / "cache")}
    rc, seconds, _, out, err = measured("validate", "--for", "local", *files, env=env)
    assert rc == 1, out + err
    assert "Traceback" not in err, err[-3000:]
    for name, (_, line) in cases.items():
        prefix = f"{tmp_path / name}.yaml: "
        assert any(got.startswith(prefix + line) for got in err.splitlines()), (name, line, err[-4000:])
    # A warning leaves the job valid; every other case is an error.
    assert f"{tmp_path / 'matches-nothing'}.yaml: ExtractionJob hostile is valid" in out
    assert sum("is valid" in line for line in out.splitlines()) == 1, out
    assert seconds < 60, seconds


def test_validate_for_local_lists_installed_ocr_languages_readably(tmp_path):
    if not shutil.which("tesseract"):
        pytest.skip("the tesseract binary is not installed here")
    listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.splitlines()[1:]
    job = tmp_path / "ocr.yaml"
    job.write_text(manifest({"kind": "ocr", "options": {"backend": "tesseract", "language": "eng+xxx"}}))
    proc = subprocess.run([PRISM, "validate", "--for", "local", str(job)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert (f"{job}: spec.extractors[0]: extractor 'words': options.language 'eng+xxx': tesseract has no data for "
            f"xxx (installed: {', '.join(sorted(s.strip() for s in listed if s.strip()))}); install "
            "tesseract-ocr-xxx") in proc.stderr.splitlines(), proc.stderr


@pytest.mark.parametrize("case", ["no-module", "suspended", "too-many-actors"])
def test_run_refuses_before_starting_ray(tmp_path, case):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("hello")
    text, line = local_cases(media)[case]
    job = tmp_path / "job.yaml"
    job.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rc, seconds, peak_mib, out, err = measured("run", "--state-dir", str(tmp_path / "state"), str(job), env=env)
    assert rc == 2, out + err
    assert f"{job}: {line}" in err and "Traceback" not in err, err[-3000:]
    # Ray never started: no session folder, and the whole command stayed small and quick.
    assert not (tmp_path / "state").exists()
    assert seconds < 30 and peak_mib < 600, (seconds, peak_mib)


@pytest.mark.parametrize(("extractors", "cores", "refused"), [
    ([{"min": 10, "max": 10}], 2, "spec.extractors[0].concurrency.min"),   # the case: 5.5 GB, 122 s
    ([{"min": 1, "max": 4}] * 5, 2, None),                                 # many pools of one actor: fine
    ([{"min": 1, "max": 1}, {"min": 2, "max": 3, "cpu": 2.5}], 2, None),    # 8 CPUs on 2 cores: at the bound
    ([{"min": 1, "max": 1}, {"min": 3, "max": 3, "cpu": 2}], 2, "spec.extractors[1].concurrency.min"),
    ([{"min": 10, "max": 10}], 16, None),
])
def test_pool_minimums_are_measured_against_the_cores(tmp_path, extractors, cores, refused):
    from prism_api import parse_spec
    from prism_pipeline.preflight import check_local

    (tmp_path / "a.txt").write_text("hello")
    spec = parse_spec({"source": {"uri": str(tmp_path)}, "sink": {"qdrant": {"collection": "c"}},
                       "extractors": [{"name": f"e{i}", "kind": "python: tests.pipeline.plugins:Poisoned",
                                       "concurrency": {"min": e["min"], "max": e["max"]},
                                       "resources": {"cpu": e.get("cpu", 1)}} for i, e in enumerate(extractors)]})
    findings = check_local(spec, cores=cores)
    assert [f.path for f in findings] == ([refused] if refused else []), findings
    if refused == "spec.extractors[1].concurrency.min":
        assert findings[0].message == ("3 actors of extractor 'e1' need 6 CPUs (all pools' minimums: 4 actors, 9 CPUs) "
                                       "but this machine has 2 cores; lower concurrency.min to 2 or less (a pool grows "
                                       "towards concurrency.max on its own)")


def test_an_ocr_actor_lists_the_installed_languages_readably():
    """The same message from setup() in a Ray actor (a cluster whose worker image lacks the language)."""
    if not shutil.which("tesseract"):
        pytest.skip("the tesseract binary is not installed here")
    from prism_api import ExtractorSpec
    from prism_pipeline.extractors.ocr import OCR
    from prism_pipeline.model_uris import ModelError

    listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.splitlines()[1:]
    ocr = OCR(ExtractorSpec.model_validate({"name": "words", "kind": "ocr",
                                            "options": {"backend": "tesseract", "language": "xxx"}}))
    with pytest.raises(ModelError) as info:
        ocr.setup()
    assert str(info.value) == (f"extractor 'words': options.language 'xxx': tesseract has no data for xxx (installed: "
                               f"{', '.join(sorted(s.strip() for s in listed))}); install tesseract-ocr-xxx")

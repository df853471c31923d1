"""The step tracer of ``benchmarks/speed/trace_step.py`` (issue 33, step 7) counts what it says it counts: on a toy
package with a known number of calls, dtype changes, no-op casts and host syncs, and on the README's model; the
steps stay within the numbers reached (issue 33's targets, but for the syncs gap that docs/architecture.md states);
the table in docs/architecture.md is what the script prints."""

import importlib.util
import pathlib
import sys
import textwrap

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speed" / "trace_step.py"

TOY = '''
import torch


def helper(x):
    return x * 2


def numbers(n):
    for i in range(n):
        yield i


def run(x):
    y = helper(helper(x))
    z = y.to(torch.float64)  # change 1
    z = z.to(torch.float64)  # no-op 1
    w = z.double()  # no-op 2
    v = w.float()  # change 2
    v = v.to("cpu")  # a device move: no cast
    v = v.type_as(y)  # no-op 3
    total = v.sum().item() + v.max().item()  # sync 1, 2
    if (v > 0).any():  # sync 3
        total += float(v.min())  # sync 4
    v[v > 100]  # sync 5: a boolean mask
    mixed = v + z  # mixed float32 / float64
    total += sum(numbers(2))  # one generator: 3 call events, 2 of them resumptions
    return total, mixed
'''


def load_script():
    spec = importlib.util.spec_from_file_location("trace_step_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trace_step():
    return load_script()


@pytest.fixture
def toy(tmp_path, monkeypatch):
    package = tmp_path / "toy_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "ops.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toy_package.ops", None)
    sys.modules.pop("toy_package", None)
    import toy_package.ops as ops

    yield package, ops
    sys.modules.pop("toy_package.ops", None)
    sys.modules.pop("toy_package", None)


def line_of(text: str) -> int:
    lines = textwrap.dedent(TOY).splitlines()
    return next(i for i, line in enumerate(lines, start=1) if text in line)


def where(text: str, function: str = "run") -> str:
    return f"toy_package/ops.py:{line_of(text)} {function}"


class TestCounter:
    def test_counts_and_places_on_a_toy_package(self, trace_step, toy):
        package, ops = toy
        x = torch.linspace(-1.0, 1.0, 5)
        (total, mixed), trace = trace_step.trace_call(ops.run, x, package=package)
        assert mixed.dtype == torch.float64 and isinstance(total, float)  # the call itself ran unchanged

        # run (1) + helper (2) + numbers (start and 2 resumptions)
        assert trace.calls == 6 and trace.resumptions == 2
        assert trace.functions == 3 and trace.files == 1
        assert trace.function_calls[f"toy_package/ops.py:{line_of('def helper')} helper"] == 2

        assert [(e.op, e.detail, e.location) for e in trace.dtype_changes] == [
            ("to", "torch.float32 -> torch.float64", where("# change 1")),
            ("float", "torch.float64 -> torch.float32", where("# change 2")),
        ]
        assert [(e.op, e.location) for e in trace.noop_casts] == [
            ("to", where("# no-op 1")), ("double", where("# no-op 2")), ("type_as", where("# no-op 3")),
        ]  # fmt: skip
        assert [(e.op, e.location) for e in trace.host_syncs] == [
            ("item", where("# sync 1, 2")), ("item", where("# sync 1, 2")), ("__bool__", where("# sync 3")),
            ("__float__", where("# sync 4")), ("__getitem__", where("# sync 5")),
        ]  # fmt: skip
        assert [e.location for e in trace.mixed_dtypes] == [where("# mixed")]
        assert trace.excluded_syncs == []
        assert trace.counts()["torch_calls"] > 10

    def test_outside_the_package_nothing_is_a_call_and_places_are_none(self, trace_step, toy, tmp_path):
        package, ops = toy
        other = tmp_path / "elsewhere"
        other.mkdir()

        def outside(x):
            return x.double().item(), ops.helper(x)

        _, trace = trace_step.trace_call(outside, torch.tensor(1.0), package=other)
        assert trace.calls == 0 and trace.functions == 0 and trace.files == 0
        assert [(e.op, e.location) for e in trace.dtype_changes + trace.host_syncs] == [
            ("double", None), ("item", None),
        ]  # fmt: skip
        assert trace.host_syncs[0].site.endswith(f"test_step_trace.py:{outside.__code__.co_firstlineno + 1}")

    def test_the_tracer_is_gone_afterwards(self, trace_step, toy):
        package, ops = toy
        previous = sys.getprofile()
        with pytest.raises(ZeroDivisionError):
            trace_step.trace_call(lambda: 1 / 0, package=package)
        assert sys.getprofile() is previous
        _, trace = trace_step.trace_call(ops.helper, torch.ones(2), package=package)
        assert trace.calls == 1 and trace.host_syncs == [] and trace.dtype_changes == []


def test_the_readme_step_traces(trace_step):
    """The script's quickstart model runs and its step is traced (numbers reported, targets not yet asserted)."""
    _, step, batch = trace_step.quickstart("geco")
    trace = trace_step.trace_step(step, batch, warmup=1)
    counts = trace.counts()
    assert counts["calls"] > 0 and counts["files"] > 1 and counts["host_syncs"] >= 1  # the loss's finiteness check
    every = trace.dtype_changes + trace.noop_casts + trace.host_syncs
    assert all(e.location is None or e.location.startswith("gpytorch_vae/") for e in every)
    assert all(key.startswith("gpytorch_vae/") for key in trace.function_calls)


# the numbers reached with the value checks off (settings.debug(False)); issue 33's targets are 67 calls, 3 dtype
# changes, 0 no-op casts and 2 host syncs for the rotated-MNIST GECO step, all met (docs/architecture.md)
REACHED = {
    "quickstart-geco": {"calls": 64, "dtype_changes": 4, "noop_casts": 0, "host_syncs": 4},
    "rotated-mnist": {"calls": 67, "dtype_changes": 3, "noop_casts": 0, "host_syncs": 2},
}


@pytest.mark.parametrize("model", sorted(REACHED))
def test_one_step_stays_within_the_numbers_reached(trace_step, model):
    _, step, batch = trace_step.MODELS[model][1]()
    counts = trace_step.trace_step(step, batch, value_checks=False).counts()
    for key, limit in REACHED[model].items():
        assert counts[key] <= limit, (key, counts[key], limit)


def test_the_architecture_page_shows_what_the_script_prints(trace_step):
    page = (ROOT / "docs" / "architecture.md").read_text()
    start = "<!-- benchmarks/speed/trace_step.py --markdown -->\n"
    end = "\n<!-- end of benchmarks/speed/trace_step.py --markdown -->"
    table = page[page.index(start) + len(start) : page.index(end)]
    assert table == trace_step.markdown()

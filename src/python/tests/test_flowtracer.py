"""The Python package against the engine's own export of the same traces, and its errors."""

import dataclasses
import gc
import math
from pathlib import Path

import numpy as np
import pytest

import flowtracer
from conftest import SAMPLE, export, exported, require


@pytest.mark.parametrize("params", [None, {"credit": {"fraction": 0.2, "gamma": 2.0}, "answer": {"sink": "tokens"}}])
def test_a_trace_file_gives_the_binarys_numbers(tmp_path, params):
    r = flowtracer.analyze(SAMPLE, params=params)
    e = exported(SAMPLE, tmp_path, params)
    assert r.status == e["status"] == "ok"
    assert r.tokens == e["tokens"]
    for key in ["reach", "flow", "throughput", "credit", "far_sources"]:
        a = getattr(r, key)
        assert a.dtype == np.float64 and a.shape == (len(r.tokens),)
        np.testing.assert_array_equal(a, np.array(e[key]), err_msg=key)
    assert [list(p[0]) for p in r.backbone] == [p["tokens"] for p in e["backbone"]]
    assert list(r.hubs) == e["hubs"] and list(r.checkpoints) == e["checkpoints"]
    assert r.answer_inflow == pytest.approx(1.0)
    assert r.provenance["steps"]["aggregate"] == "cpu"
    assert r.zero_copy is None
    # (the result is filled from the engine's dict without __init__: every field, made or to be
    # made on its first read, and nothing else)
    held = dict(vars(r))
    unmade = held.pop("_unmade").names()
    assert held.keys() | set(unmade) == {f.name for f in dataclasses.fields(flowtracer.FlowResult)}


def chain(n: int, dtype=np.float32) -> np.ndarray:
    """Each token attends half to its predecessor and half to the first token."""
    a = np.zeros((n, n), dtype=np.float64)
    a[0, 0] = 1.0
    for k in range(1, n):
        a[k, k - 1] += 0.5
        a[k, 0] += 0.5
    return a.astype(dtype)


def test_attention_in_memory_runs_the_same_pipeline():
    n = 24
    r = flowtracer.analyze(chain(n), tokens=[f"t{i}" for i in range(n)], question=(0, 3), answer=(n - 2, n))
    assert r.status == "ok" and r.response == (3, n)
    assert r.answer_inflow == pytest.approx(1.0)
    gamma = r.credit[r.response[0] : r.response[1]]
    assert 0 < (gamma > 1).sum() <= math.ceil(0.4 * len(gamma))
    assert set(np.unique(r.credit)) <= {1.0, 1.5}
    # [L,H,N,N] of the same rows aggregates to the same matrix.
    stacked = np.ascontiguousarray(np.broadcast_to(chain(n), (3, 2, n, n)))
    r4 = flowtracer.analyze(stacked, question=(0, 3), answer=(n - 2, n))
    np.testing.assert_allclose(r4.flow, r.flow, rtol=1e-12)


def test_a_credit_only_batch_makes_the_whole_analysis_credit():
    """`credit_only=True` (an RL step's shaping) gives the same credit, throughput, reach and
    flow as the whole analysis, to the bit, and leaves the backbone and roles unmade: empty, and
    absent from the provenance's steps."""
    items = [dict(attention=chain(n), question=(0, 3), answer=(n - 2, n)) for n in (24, 40, 65)]
    whole = flowtracer.analyze_batch(items, backend="cpu")
    credit = flowtracer.analyze_batch(items, backend="cpu", credit_only=True)
    for a, c in zip(whole, credit):
        assert a.status == c.status == "ok"
        for key in ["credit", "throughput", "reach", "flow"]:
            np.testing.assert_array_equal(getattr(a, key), getattr(c, key), err_msg=key)
        assert len(a.backbone) > 0 and "backbone" in a.provenance["steps"] and "roles" in a.provenance["steps"]
        assert c.backbone == [] and len(c.hubs) == len(c.checkpoints) == len(c.far_sources) == 0
        assert "backbone" not in c.provenance["steps"] and "roles" not in c.provenance["steps"]
        assert c.provenance["steps"]["credit"] == "cpu"


def test_an_array_is_read_where_it_lies():
    n = 32
    for dtype in (np.float32, np.float16):
        a = chain(n, dtype)
        r = flowtracer.analyze(a, question=(0, 3), answer=(n - 2, n))
        assert r.zero_copy is True, dtype
    # float64 has to be converted, and the result says so.
    assert flowtracer.analyze(chain(n, np.float64), question=(0, 3), answer=(n - 2, n)).zero_copy is False
    # A strided view is not contiguous: converted too, same numbers.
    wide = np.zeros((n, 2 * n), dtype=np.float32)
    wide[:, ::2] = chain(n)
    view = wide[:, ::2]
    r = flowtracer.analyze(view, question=(0, 3), answer=(n - 2, n))
    assert r.zero_copy is False
    np.testing.assert_array_equal(r.credit, flowtracer.analyze(chain(n), question=(0, 3), answer=(n - 2, n)).credit)


def test_bad_input_is_an_error_that_names_it(tmp_path):
    n = 8
    a = chain(n)
    a[2, 5] = 0.3  # a query attending to a later token
    with pytest.raises(flowtracer.TraceError, match=r"rollout_7.*row 2") as e:
        flowtracer.analyze(a, question=(0, 2), answer=(n - 1, n), name="rollout_7")
    assert e.value.problem == "non_causal" and isinstance(e.value, ValueError)
    with pytest.raises(ValueError, match="params"):
        flowtracer.analyze(SAMPLE, params={"credit": {"fraction": 7}})
    with pytest.raises(flowtracer.TraceError, match="no_such.safetensors"):
        flowtracer.analyze(tmp_path / "no_such.safetensors")
    with pytest.raises(flowtracer.TraceError, match="axes"):
        flowtracer.analyze(np.zeros(5, dtype=np.float32), question=(0, 1), answer=(4, 5))
    with pytest.raises(flowtracer.TraceError, match="attention.*tokens"):
        flowtracer.analyze(chain(n), tokens=["x"] * (n + 1), question=(0, 1), answer=(n - 1, n))
    with pytest.raises(flowtracer.TraceError, match="span"):
        flowtracer.analyze(chain(n), question=(0, 1), answer=(n - 1, n + 4))
    with pytest.raises(flowtracer.TraceError, match="dtype int32") as e:
        flowtracer.analyze(chain(n).astype(np.int32), question=(0, 1), answer=(n - 1, n))
    assert e.value.problem == "dtype"
    # A backend this engine lacks (the wheel is built without wgpu) is named by the keyword that
    # asked for it, not by the binary's flag.
    with pytest.raises(ValueError, match=r'^backend "wgpu": this build of flowtracer has no wgpu backend .*\("auto" takes what this machine has\)$'):
        flowtracer.analyze(chain(n), question=(0, 1), answer=(n - 1, n), backend="wgpu")
    with pytest.raises(flowtracer.TraceError, match="rollout_7: not an array of numbers") as e:
        flowtracer.analyze([[1.0], [0.5, 0.5]], question=(0, 1), answer=(1, 2), name="rollout_7")
    assert e.value.problem == "shape"
    # A span is read once, before the engine, and refused as what it is: reversed, negative or
    # not a whole number (it had been taken as an empty span, a type error, a truncated int).
    for question, answer, says in [((0, 1), (n, n - 1), "answer: span 8:7 ends before it starts"), ((-1, 1), (n - 1, n), "question: start -1 is negative"), ((0, 1.5), (n - 1, n), "question: end 1.5 is not a whole number"), ((0,), (n - 1, n), "question: a span is a .start, end. pair, not .0,.")]:
        with pytest.raises(flowtracer.TraceError, match=f"rollout_7: {says}") as e:
            flowtracer.analyze(chain(n), question=question, answer=answer, name="rollout_7")
        assert e.value.problem == "span"
    assert flowtracer.analyze(chain(n), question=(0, 1.0), answer=np.array([n - 1, n])).status == "ok"
    with pytest.raises(ValueError, match="dump: answer: span 8:7 ends before it starts"):
        flowtracer.dump(tmp_path / "reversed.safetensors", chain(n), [str(i) for i in range(n)], question=(0, 1), answer=(n, n - 1))
    assert not (tmp_path / "reversed.safetensors").exists()
    # Attention an analysis would refuse is refused before the file exists, not at its first analysis.
    with pytest.raises(flowtracer.TraceError, match=r"later\.safetensors.*row 2.*later token 5") as e:
        flowtracer.dump(tmp_path / "later.safetensors", a, [str(i) for i in range(n)], question=(0, 2), answer=(n - 1, n))
    assert e.value.problem == "non_causal" and not (tmp_path / "later.safetensors").exists()
    # What is not attention is refused by the array's name, as an analysis refuses it (NumPy's
    # own errors had named neither), and nothing is written.
    for bad, says, problem in [([[1.0], [0.5, 0.5]], "dump: attention: not an array of numbers", "shape"), (chain(n).astype(np.int32), "dump: attention: dtype int32 is not floating point", "dtype")]:
        with pytest.raises(flowtracer.TraceError, match=says) as e:
            flowtracer.dump(tmp_path / "bad.safetensors", bad, [str(i) for i in range(n)], question=(0, 1), answer=(n - 1, n))
        assert e.value.problem == problem and not (tmp_path / "bad.safetensors").exists()


def test_a_batch_keeps_each_traces_error_to_itself():
    n = 16
    bad = chain(n)
    bad[3, 9] = 0.5
    items = [dict(attention=chain(n), question=(0, 2), answer=(n - 1, n)), dict(attention=bad, question=(0, 2), answer=(n - 1, n), name="bad one")]
    out = flowtracer.analyze_batch(items, errors="return")
    assert isinstance(out[0], flowtracer.FlowResult) and out[0].status == "ok"
    assert isinstance(out[1], flowtracer.TraceError) and "bad one" in str(out[1])
    with pytest.raises(flowtracer.TraceError, match="bad one"):
        flowtracer.analyze_batch(items)
    # Refused before the engine (a reversed span, integers) or by it, each keeps its own place.
    items += [dict(attention=chain(n), question=(2, 0), answer=(n - 1, n), name="reversed"), dict(attention=chain(n).astype(np.int64), question=(0, 2), answer=(n - 1, n), name="integers")]
    items += [dict(attention=chain(n), question=(0, 2), answer=(n - 2, n))]
    out = flowtracer.analyze_batch(items, errors="return")
    assert [type(o).__name__ for o in out] == ["FlowResult", "TraceError", "TraceError", "TraceError", "FlowResult"]
    assert [o.problem for o in out[1:4]] == ["non_causal", "span", "dtype"]
    assert "reversed: question: span 2:0" in str(out[2]) and "integers: dtype int64" in str(out[3])
    assert out[4].answer == (n - 2, n) and out[4].status == "ok"
    with pytest.raises(KeyError, match="analyze_batch: item 0 has no answer"):
        flowtracer.analyze_batch([dict(attention=chain(n), question=(0, 2))])


def test_a_batch_refuses_what_it_would_otherwise_misread():
    """A misspelt key would leave its span at the default, an array given as an item would read
    as one with no keys, and an unknown `errors` would act as "raise": each is refused by name."""
    n = 16
    item = dict(attention=chain(n), question=(0, 2), answer=(n - 1, n))
    with pytest.raises(KeyError, match=r"item 1 has 'reponse', which analyze does not take \(the keys: attention, question, answer, response, tokens, name\)"):
        flowtracer.analyze_batch([item, dict(item, reponse=(2, n))])
    with pytest.raises(TypeError, match=r"item 0 is a ndarray, not a dict"):
        flowtracer.analyze_batch([chain(n)])
    with pytest.raises(flowtracer.TraceError, match=r"covers 16 tokens but 3 tokens were passed with it") as e:
        flowtracer.analyze_batch([dict(item, tokens=["a", "b", "c"])])
    assert e.value.problem == "token_count"
    with pytest.raises(TypeError, match=r"row: tokens: a sequence of the N tokens' strings, not one str"):
        flowtracer.analyze_batch([dict(item, tokens="a" * n, name="row")])
    for run in (lambda: flowtracer.analyze_batch([item], errors="ignore"), lambda: flowtracer.analyze_files([SAMPLE], errors="ignore")):
        with pytest.raises(ValueError, match=r"errors='ignore': expected \"raise\" or \"return\""):
            run()


def test_a_batch_item_may_be_a_pandas_row():
    """Items are read by key: a DataFrame's rows (what `iterrows` gives) work as their dicts do."""
    pd = require("pandas")
    n = 16
    frame = pd.DataFrame([dict(attention=chain(n), question=(0, 2), answer=(n - 1, n), name="row")])
    (got,) = flowtracer.analyze_batch([row for _, row in frame.iterrows()])
    (want,) = flowtracer.analyze_batch(frame.to_dict("records"))
    np.testing.assert_array_equal(got.credit, want.credit)
    assert got.source == "row"


def test_one_path_is_one_file_not_its_characters(tmp_path):
    """`analyze_files("x.safetensors")` had read each character as a path (`/` a folder, refused),
    and `fidelity("runs/x")` would have walked `/` for traces."""
    (one,) = flowtracer.analyze_files(SAMPLE)
    assert one.status == "ok" and one.source.endswith("addition.safetensors")
    with pytest.raises(ValueError, match=r"no trace among the inputs carries causal_effect \(1 without it\)"):
        flowtracer.fidelity(SAMPLE)


def test_a_run_folder_stands_for_its_trace_files(tmp_path):
    """`analyze_files` takes run folders as the binary does (its traces, sorted, a nested run's
    too); a folder without traces is refused by name, where it had been "not a regular file"."""
    run = tmp_path / "run"
    (run / "step_2").mkdir(parents=True)
    for name in ("b.safetensors", "a.safetensors", "step_2/c.safetensors"):
        (run / name).write_bytes(SAMPLE.read_bytes())
    got = flowtracer.analyze_files([run, SAMPLE])
    assert [Path(r.source).relative_to(tmp_path).as_posix() if tmp_path in Path(r.source).parents else Path(r.source).name for r in got] == [
        "run/a.safetensors",
        "run/b.safetensors",
        "run/step_2/c.safetensors",
        "addition.safetensors",
    ]
    assert all(r.credit.tolist() == got[-1].credit.tolist() for r in got)
    (tmp_path / "empty").mkdir()
    with pytest.raises(flowtracer.TraceError, match=r"empty: no trace files \(\*\.safetensors\) in this folder") as e:
        flowtracer.analyze_files(tmp_path / "empty")
    assert e.value.problem == "empty"


def test_files_load_and_credits_read_back(tmp_path):
    t = flowtracer.load_trace(SAMPLE)
    assert len(t.tokens) == t.shape[-1] and t.question[1] <= t.response[0] and t.dtype in ("f32", "f16", "bf16")
    out = export([SAMPLE], tmp_path / "out", "credits")
    credits = flowtracer.read_credits(out / "credits.safetensors")
    (row,) = credits.rows
    r = t.analyze()
    np.testing.assert_array_equal(row.credit, r.credit.astype(np.float32))
    assert (row.question, row.response, row.answer) == (t.question, t.response, t.answer)
    assert credits.params == flowtracer.Params()
    (tmp_path / "not_credits.safetensors").write_bytes(SAMPLE.read_bytes())
    with pytest.raises(flowtracer.TraceError, match=r"not_credits\.safetensors.*format"):
        flowtracer.read_credits(tmp_path / "not_credits.safetensors")


def test_dumps_racing_to_one_name_leave_one_file(tmp_path):
    """Writers racing to one name (data-parallel ranks into one folder, threads): one file
    lands, whole, and every other writer is told it exists; none replaces it (each passes the
    check made before the work: the one made as the file lands decides)."""
    import threading

    n = 256
    a = np.tril(np.ones((n, n), np.float32))
    a /= a.sum(axis=1, keepdims=True)
    path = tmp_path / "sample_0000.safetensors"
    start, outcomes = threading.Barrier(8), {}

    def write(i):
        start.wait()
        try:
            flowtracer.dump(path, a, [f"w{i}"] * n, question=(0, 4), answer=(n - 2, n))
            outcomes[i] = "written"
        except ValueError as e:
            outcomes[i] = str(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    won = [i for i, o in outcomes.items() if o == "written"]
    assert len(won) == 1, outcomes
    assert all(o == "written" or o == f"{path}: already exists (pass overwrite=True to replace it)" for o in outcomes.values()), outcomes
    assert flowtracer.load_trace(path).tokens[0] == f"w{won[0]}"
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary left"


def test_dump_names_what_stands_in_its_way(tmp_path):
    """A folder at the path, or a file where its folder would be, is named as what it is, with
    or without overwrite (the second had been "already exists (pass overwrite=True ...)", which
    overwrite=True did not help); what was there is left as it was."""
    n = 8
    a = np.tril(np.ones((n, n), np.float32))
    a /= a.sum(axis=1, keepdims=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"t\.safetensors: cannot be written: .*notes\.txt is a file, not a folder"):
            flowtracer.dump(notes / "t.safetensors", a, list("abcdefgh"), question=(0, 2), answer=(6, 8), overwrite=overwrite)
        with pytest.raises(ValueError, match="is a folder, not the file to write"):
            flowtracer.dump(tmp_path, a, list("abcdefgh"), question=(0, 2), answer=(6, 8), overwrite=overwrite)
    assert notes.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_tokens_given_as_bytes_are_byte_level_pieces(tmp_path):
    """Token pieces as bytes (tiktoken's `decode_single_token_bytes`) are spelled as byte-level
    BPE spells them, in the result and in a dumped file (their str() had been "b'...'"), and the
    file's tokens decode to the text, a character cut between two pieces joined; a token that
    is not text is named by its place."""
    n = 6
    a = np.tril(np.ones((n, n), np.float32))
    a /= a.sum(axis=1, keepdims=True)
    pieces = [b"Q", b" two", b" \xe2", b"\x86\x92", b" 2", b"\n"]
    r = flowtracer.analyze(a, tokens=pieces, question=(0, 2), answer=(4, 6))
    assert r.tokens == ["Q", "Ġtwo", "Ġâ", "ĨĴ", "Ġ2", "Ċ"]  # GPT-2's table: 0x86 → U+0128, 0x92 → U+0134
    assert flowtracer.analyze(a, tokens=np.array(pieces), question=(0, 2), answer=(4, 6)).tokens == r.tokens
    path = tmp_path / "t.safetensors"
    flowtracer.dump(path, a, pieces, question=(0, 2), answer=(4, 6))
    assert flowtracer.load_trace(path).tokens == r.tokens
    with pytest.raises(ValueError, match=r"tokens\[2\] is not text that UTF-8 can hold"):
        flowtracer.analyze(a, tokens=("a", "b", "\ud800", "c", "d", "e"), question=(0, 2), answer=(4, 6))
    with pytest.raises(ValueError, match=r"dump: tokens\[2\] is not text that UTF-8 can hold"):
        flowtracer.dump(tmp_path / "u.safetensors", a, ["a", "b", "\ud800", "c", "d", "e"], question=(0, 2), answer=(4, 6))
    with pytest.raises(TypeError, match="not one str"):
        flowtracer.dump(tmp_path / "v.safetensors", a, "abcdef", question=(0, 2), answer=(4, 6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]


def test_params_are_the_engines(tmp_path):
    p = flowtracer.Params()
    assert p.credit.fraction == 0.4 and p.credit.gamma == 1.5 and p.answer.sink == "writers"
    q = p.replace(credit={"gamma": 2.0})
    assert q.credit.gamma == 2.0 and q.credit.fraction == 0.4 and p.credit.gamma == 1.5
    (tmp_path / "p.toml").write_text("[credit]\nfraction = 0.25\n")
    assert flowtracer.Params.load(tmp_path / "p.toml").credit.fraction == 0.25
    assert flowtracer.Params.from_toml("[backbone]\nmax_paths = 3\n").backbone.max_paths == 3
    with pytest.raises(ValueError, match="fraction"):
        flowtracer.Params(credit={"fraction": 2})
    with pytest.raises(ValueError, match=r"params: credit\.gamma is nan: the parameters are finite numbers"):
        flowtracer.Params(credit={"gamma": float("nan")})
    with pytest.raises(ValueError, match=r"params: aggregate\.threshold is inf"):
        flowtracer.analyze(SAMPLE, params={"aggregate": {"threshold": float("inf")}})
    # (the JSON the sections were sent as is not the caller's: no line and column of it)
    with pytest.raises(ValueError, match=r"unknown field `fracton`, expected one of `fraction`, .*`apply_to_negative`$"):
        flowtracer.Params(credit={"fracton": 0.2})
    with pytest.raises(ValueError, match=r"unknown field `fracton`.*`apply_to_negative`$"):
        flowtracer.analyze(SAMPLE, params={"credit": {"fracton": 0.2}})
    with pytest.raises(ValueError, match=r"at line 1 column \d+$"):
        flowtracer.Params.from_json('{"credit": {"fracton": 0.2}}')  # the caller's JSON: where in it
    with pytest.raises(AttributeError, match="immutable"):
        p.credit.gamma = 3


def test_params_may_be_a_params_files_path(tmp_path):
    """`params=` takes what `--params` takes: a file's path, as a str or a Path, with the file's
    own errors; anything else that is not a mapping is refused by type, not by a confusing
    failure of `dict(...)` inside."""
    (tmp_path / "p.toml").write_text("[credit]\nfraction = 0.2\ngamma = 2.0\n")
    want = flowtracer.analyze(SAMPLE, params={"credit": {"fraction": 0.2, "gamma": 2.0}})
    for path in [tmp_path / "p.toml", str(tmp_path / "p.toml")]:
        got = flowtracer.analyze(SAMPLE, params=path)
        np.testing.assert_array_equal(got.credit, want.credit)
    assert not np.array_equal(want.credit, flowtracer.analyze(SAMPLE).credit), "the file's γ = 2 is used"
    with pytest.raises(ValueError, match=r"missing\.toml: cannot read parameters"):
        flowtracer.analyze(SAMPLE, params=tmp_path / "missing.toml")
    with pytest.raises(TypeError, match=r"params: a Params, a mapping of sections .* not int"):
        flowtracer.analyze(chain(8), question=(0, 1), answer=(7, 8), params=5)


def test_token_advantages_follow_the_engines_rule():
    gamma = np.array([[1.0, 1.5, 1.0], [1.5, 1.5, 1.0]])
    adv = np.array([2.0, -1.0])
    np.testing.assert_array_equal(flowtracer.token_advantages(gamma, adv, apply_to_negative=True), [[2.0, 3.0, 2.0], [-1.5, -1.5, -1.0]])
    np.testing.assert_array_equal(flowtracer.token_advantages(gamma, adv, apply_to_negative=False), [[2.0, 3.0, 2.0], [-1.0, -1.0, -1.0]])
    np.testing.assert_array_equal(flowtracer.token_advantages(gamma[0], 0.5), [0.5, 0.75, 0.5])
    per_token = np.array([[2.0, -2.0, 0.0], [-1.0, 4.0, 1.0]])  # verl's and OpenRLHF's (B, T)
    np.testing.assert_array_equal(flowtracer.token_advantages(gamma, per_token, apply_to_negative=False), [[2.0, -2.0, 0.0], [-1.0, 6.0, 1.0]])
    with pytest.raises(ValueError, match=r"gamma\[0, 1\] is NaN: token advantages take finite numbers"):
        flowtracer.token_advantages(np.array([[1.0, np.nan]]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"advantages\[1\] is inf"):
        flowtracer.token_advantages(np.ones((2, 3)), np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match=r"^advantages is NaN"):
        flowtracer.token_advantages(gamma[0], float("nan"))
    with pytest.raises(ValueError, match="do not match"):
        flowtracer.token_advantages(gamma, np.ones(3))


def test_backends_says_what_the_wheel_has():
    report = flowtracer.backends()
    assert "cpu" in report and "auto" in report
    with pytest.raises(ValueError, match="backend"):
        flowtracer.analyze(chain(8), question=(0, 1), answer=(7, 8), backend="tpu")


def test_tokens_come_back_as_given_or_as_their_str():
    a = chain(8)
    toks = [f"t{i}" for i in range(8)]
    r = flowtracer.analyze(a, tokens=toks, question=(0, 1), answer=(7, 8))
    assert r.tokens is toks, "a list of str is the result's as it is, not a copy"
    assert gc.is_tracked(toks), "the caller's list is left as the GC had it"
    # the lists the engine makes hold only str, and are kept out of the cyclic GC's walks
    assert not gc.is_tracked(flowtracer.analyze_files([SAMPLE])[0].tokens)
    assert flowtracer.analyze(a, question=(0, 1), answer=(7, 8)).tokens == [f"<{i}>" for i in range(8)]
    assert isinstance(r.provenance, dict) and r.provenance["steps"]["aggregate"] == "cpu"
    r = flowtracer.analyze(a, tokens=tuple(range(8)), question=(0, 1), answer=(7, 8))
    assert r.tokens == [str(i) for i in range(8)]
    # a list that is not all str is read item by item too; its count is checked either way
    r = flowtracer.analyze(a, tokens=["t0", 1, *toks[2:]], question=(0, 1), answer=(7, 8))
    assert r.tokens == ["t0", "1", *toks[2:]]
    with pytest.raises(ValueError, match="tokens"):
        flowtracer.analyze(a, tokens=toks[:7], question=(0, 1), answer=(7, 8))
    with pytest.raises(ValueError, match="tokens must be a sequence of strings"):
        flowtracer.analyze(a, tokens=5, question=(0, 1), answer=(7, 8))


def test_the_rarely_read_parts_are_made_when_read_and_travel_made():
    import copy
    import dataclasses
    import pickle

    lazy = ["tokens", "layers", "heads", "backbone", "provenance"]
    r = flowtracer.analyze_files([SAMPLE])[0]
    assert not set(lazy) & set(vars(r)) and vars(r)["_unmade"].names() == lazy, "unmade until read"
    back = pickle.loads(pickle.dumps(r))
    assert "_unmade" not in vars(back) and back.tokens == flowtracer.load_trace(SAMPLE).tokens
    assert np.array_equal(back.credit, r.credit) and back.backbone == r.backbone and back.provenance == r.provenance
    assert r.tokens is r.tokens and r.backbone is r.backbone, "made once, then kept"
    assert copy.deepcopy(r).layers == r.layers and dataclasses.asdict(r)["heads"] == r.heads
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        r.nonesuch
    # an array's tokens are the caller's (never unmade); the rest as for a file
    a = flowtracer.analyze(chain(8), tokens=[f"t{i}" for i in range(8)], question=(0, 1), answer=(7, 8))
    assert "tokens" in vars(a) and vars(a)["_unmade"].names() == lazy[1:]
    assert a.backbone and all(isinstance(p, tuple) and isinstance(p[0], list) and isinstance(p[1], float) for p in a.backbone)


def test_reprs_are_summaries_not_every_token(tmp_path):
    n = 3000
    r = flowtracer.analyze(chain(n), question=(0, 2), answer=(n - 1, n), name="long one")
    text = repr(r)
    assert len(text) < 400 and "'long one'" in text and f"n={n}" in text and "status='ok'" in text, text
    assert r.n == n, "the n a summary shows is an attribute"
    path = tmp_path / "long.safetensors"
    flowtracer.dump(path, chain(n), [f"tok{i}" for i in range(n)], question=(0, 2), answer=(n - 1, n))
    t = flowtracer.load_trace(path)
    assert len(repr(t)) < 400 and f"n={n}" in repr(t) and "tok1" not in repr(t) and t.n == n, repr(t)
    from_file = flowtracer.analyze_files([path])[0]
    assert len(repr(from_file)) < 400 and from_file.n == n and not {"tokens", "backbone"} & set(vars(from_file)), "a repr makes nothing unmade"
    credits = flowtracer.read_credits(export([SAMPLE], tmp_path / "out", "credits") / "credits.safetensors")
    assert repr(credits).startswith("Credits(1 rows") and f"n={credits.rows[0].n}" in repr(credits.rows[0]) and credits.rows[0].n == len(credits.rows[0].credit) > 0 and len(repr(credits.rows[0])) < 400


def test_each_result_has_its_own_provenance():
    a, b = flowtracer.analyze_files([SAMPLE, SAMPLE])
    assert a.provenance == b.provenance and a.provenance["steps"]["flow"] == "cpu"
    a.provenance["steps"]["flow"] = "changed"
    assert b.provenance["steps"]["flow"] == "cpu"



def test_results_compare_by_value():
    a, b = flowtracer.analyze_files([SAMPLE, SAMPLE])
    assert a == b and not (a != b)
    other = flowtracer.analyze_files([SAMPLE], params={"credit": {"gamma": 3.0}})[0]
    assert a != other and not np.array_equal(a.credit, other.credit)
    changed = dataclasses.replace(a, flow=a.flow.copy())
    assert changed == a
    changed.flow[-1] += 1.0
    assert changed != a
    assert flowtracer.load_trace(SAMPLE) == flowtracer.load_trace(SAMPLE)
    with pytest.raises(TypeError):
        hash(a)


CHILD = r"""
import sys, time, numpy as np, flowtracer
n = 1024
a = np.zeros((n, n), dtype=np.float32)
a[0, 0] = 1.0
for k in range(1, n):
    a[k, k - 1] += 0.5
    a[k, 0] += 0.5
item = dict(attention=a, question=(0, 4), answer=(n - 2, n))
t = time.perf_counter()
flowtracer.analyze_batch([item] * 16, backend="cpu")
per_trace = (time.perf_counter() - t) / 16
count = int(120 / per_trace) + 1                 # a batch that would run for two minutes
print("started", flush=True)
flowtracer.analyze_batch([item] * count, backend="cpu")
print("finished", flush=True)
"""


def test_ctrl_c_stops_a_long_batch():
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert "finished" not in out, "the batch ran to its end: Ctrl-C did not stop it"
    assert "KeyboardInterrupt" in err and child.returncode != 0
    assert time.monotonic() - sent < 30, "the engine stopped long after Ctrl-C"


def test_a_long_batch_reports_its_progress_as_windows_finish(capsys):
    """Ten windows of 64 traces of 1k tokens: the caller hears of each window as it finishes
    (from its own thread, every 50 ms at most), then of the end; a report that raises stops the
    engine and its exception comes out of the call; `True` draws a bar on the terminal."""
    n, count = 1024, 640
    item = dict(attention=chain(n), question=(0, 4), answer=(n - 2, n))
    calls = []
    results = flowtracer.analyze_batch([item] * count, backend="cpu", progress=lambda done, total: calls.append((done, total)))
    assert len(results) == count
    assert calls[-1] == (count, count), calls
    assert all(total == count for _, total in calls), calls
    done = [d for d, _ in calls]
    assert done == sorted(set(done)), f"each report says something new: {calls}"
    assert all(d % 64 == 0 for d in done), f"traces are counted a window at a time: {calls}"
    assert len(calls) > 1, f"a batch of ten windows was heard of only at its end: {calls}"

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop(f"{done}/{total}")

    with pytest.raises(Stop):
        flowtracer.analyze_batch([item] * count, backend="cpu", progress=stop)
    assert len(flowtracer.analyze_files([SAMPLE], backend="cpu", progress=True)[0].credit) > 0
    assert capsys.readouterr().err.endswith(f"\rflowtracer: 1/1 traces [{'#' * 30}]\n")
    with pytest.raises(TypeError, match="progress"):
        flowtracer.analyze_files([SAMPLE], progress="yes")


FORKED = r"""
import multiprocessing as mp, os, sys
import numpy as np
import flowtracer

n = 256
a = np.tril(np.random.default_rng(0).random((n, n), dtype=np.float32)); a /= a.sum(-1, keepdims=True)
parent = flowtracer.analyze(a, question=(0, 8), answer=(n - 4, n))
# Two traces a core or more: the batch runs one trace a core, each in a pool of one thread of
# its own, which a forked child must make again too.
many = [dict(attention=a, question=(0, 8), answer=(n - 4, n))] * (2 * os.cpu_count() + 2)
assert all((b.credit == parent.credit).all() for b in flowtracer.analyze_batch(many))

def child(i):
    one = flowtracer.analyze(a, question=(0, 8), answer=(n - 4, n))
    batch = flowtracer.analyze_batch([dict(attention=a, question=(0, 8), answer=(n - 4, n))] * 3)
    spread = flowtracer.analyze_batch(many)
    trace = flowtracer.load_trace(sys.argv[1])
    return (one.credit == parent.credit).all() and all((b.credit == parent.credit).all() for b in batch + spread) and len(trace.tokens) > 0

with mp.get_context("fork").Pool(2) as pool:
    print("children", pool.map_async(child, range(2)).get(timeout=60), flush=True)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork (not on Windows)")
def test_a_process_forked_after_an_analysis_analyses_too():
    # Rayon's global pool has no threads in a forked child; the engine's own pool is made again
    # there (multiprocessing, datasets.map(num_proc=...), DataLoader workers fork on Linux).
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", FORKED, str(SAMPLE)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "children [True, True]", (run.stdout, run.stderr)

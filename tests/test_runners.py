"""Runner portability: the job API path, pickling with Beam's pickler, the fusion break, and worker packaging."""

import zipfile

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.config import JobConfig
from beam_jobs.packaging import is_local, worker_packaging_args
from beam_jobs.pipeline import build_pipeline, plan_job
from beam_jobs.sinks.finalize import FinalizeFn
from beam_jobs.sinks.shards import WriteShardsFn
from beam_jobs.sources.archive import ReadArchiveFn
from schemas.source import SourceImage
from tests.fixtures import encode, photo_like
from tests.test_pipeline_e2e import fingerprint, run
from transforms.expand import ExpandFn
from transforms.policies import PRESETS


def test_portable_runner_job_api_gives_the_same_records(image_folder, tmp_path, cache_dir):
    # The job API that Flink and Dataflow use, with an in-process job server and loopback workers.
    a, b = tmp_path / "a", tmp_path / "b"
    run(a, source=str(image_folder), copies=2, cache_dir=str(cache_dir))
    portable = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
    run(b, source=str(image_folder), copies=2, cache_dir=str(cache_dir), pipeline_args=portable)
    assert fingerprint(a) == fingerprint(b) and len(fingerprint(a)) == 24


def test_every_dofn_pickles_with_beams_pickler(tmp_path):
    import numpy as np

    fns = [
        ExpandFn(PRESETS["randaugment"], copies=2, seed=1, class_names=["a"]),
        WriteShardsFn(str(tmp_path), ("tfrecord", "parquet"), ["a"], 1),
        FinalizeFn(
            str(tmp_path), str(tmp_path / "s"), str(tmp_path / "t"), "x", "train", ("tfrecord",), ["a"], "jpeg", {}
        ),
        ReadArchiveFn("root/", {"a/1.jpg": (0, "a")}),
    ]
    for fn in fns:
        restored = pickler.loads(pickler.dumps(fn))
        assert type(restored) is type(fn)
    expand = pickler.loads(pickler.dumps(fns[0]))
    expand.setup()
    data = encode(photo_like(np.random.default_rng(0), 20, 30), "PNG")
    records = [r for r in expand.process(SourceImage("a/1.png", 0, "a", data=data)) if isinstance(r, dict)]
    assert [r["copy_index"] for r in records] == [1, 2]


def test_sources_are_reshuffled_before_decoding(image_folder, tmp_path, cache_dir):
    config = JobConfig(output=str(tmp_path / "o"), source=str(image_folder), policy=PRESETS["light"],
                       cache_dir=str(cache_dir))  # fmt: skip
    p = beam.Pipeline(options=PipelineOptions([]))
    build_pipeline(p, plan_job(config), "graphtest")
    proto = p.to_runner_api()
    transforms = proto.components.transforms
    expand = next(t for t in transforms.values() if t.unique_name.endswith("DecodeAugmentEncode"))
    (source_pc,) = expand.inputs.values()
    producers = {t.unique_name: t for t in transforms.values() if source_pc in t.outputs.values()}
    # The decoder's input comes out of SpreadSources, which holds a Reshuffle (a GroupByKey inside): a fusion break.
    spread = producers["ReadImages/SpreadSources"]
    inner, stack = set(), list(spread.subtransforms)
    while stack:
        t = transforms[stack.pop()]
        inner.add(t.unique_name)
        stack.extend(t.subtransforms)
    assert any("GroupByKey" in n or "ReshufflePerKey" in n for n in inner), inner


def _graph_bytes(source, out, cache_dir) -> tuple[int, list[str]]:
    config = JobConfig(output=str(out), source=str(source), policy=PRESETS["light"], cache_dir=str(cache_dir),
                       balance=True, splits=(("train", 0.8), ("validation", 0.2)), mixup=0.2)  # fmt: skip
    p = beam.Pipeline(options=PipelineOptions([]))
    build_pipeline(p, plan_job(config), "graphsize")
    staged = sorted(f.name for f in (out.parent / f"{out.name}.staging-graphsize" / ".tmp" / "plan").iterdir())
    return p.to_runner_api().ByteSize(), staged


def test_the_pipeline_graph_does_not_grow_with_the_inputs(tmp_path, cache_dir):
    # Dataflow and Flink refuse large job graphs: what holds an entry per input (listing, balancing plan, mix
    # partners, manifest rows) is staged in files the workers read, and the graph holds their paths.
    small, large = tmp_path / "small", tmp_path / "large"
    for root, per_class in ((small, 5), (large, 400)):
        for c, name in enumerate(("cats", "dogs")):
            (root / name).mkdir(parents=True)
            for i in range(per_class if c == 0 else per_class // 5):  # uneven classes: balancing plans per source
                (root / name / f"{name}_{i:04d}_{i * 7919 % 10007:05d}.png").write_bytes(b"not decoded here")
    small_bytes, staged = _graph_bytes(small, tmp_path / "o1", cache_dir)
    large_bytes, _ = _graph_bytes(large, tmp_path / "o2", cache_dir)
    assert staged == ["copies_per_source", "listing", "manifest", "mix_partners"]
    # Held in the graph, these 474 more inputs added 36 KB (~77 bytes per input: a million inputs, ~77 MB); only a
    # batch size and the paths differ now.
    assert abs(large_bytes - small_bytes) < 200, (small_bytes, large_bytes)


@pytest.mark.parametrize(
    ("args", "local"),
    [
        ([], True),
        (["--runner=DirectRunner"], True),
        (["--runner=PortableRunner", "--environment_type=LOOPBACK"], True),
        (["--runner=PortableRunner", "--environment_type=DOCKER"], False),
        (["--runner=FlinkRunner", "--flink_master=host:8081"], False),
        (["--runner=DataflowRunner"], False),
    ],
)
def test_which_runners_run_workers_locally(args, local):
    assert is_local(PipelineOptions(args)) == local


def test_remote_runs_ship_this_package_as_a_wheel():
    args = worker_packaging_args(["--runner=FlinkRunner", "--flink_master=host:8081"])
    wheel = next(a.split("=", 1)[1] for a in args if a.startswith("--extra_package="))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("beam_jobs/cli.py", "transforms/expand.py", "schemas/record.py"):
        assert module in names
    assert not any(n.startswith("tests/") for n in names)
    shipped = ["--runner=FlinkRunner", "--sdk_container_image=me/beam-expand:1"]
    assert worker_packaging_args(shipped) == shipped

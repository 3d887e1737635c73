"""ExpandFn on a pinned local runner: records per source, dead-letter output, labels untouched."""

import apache_beam as beam
import numpy as np
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.source import SourceImage
from tests.fixtures import encode, photo_like
from transforms.expand import DEAD_LETTER, ExpandFn
from transforms.policies import PRESETS


def test_expand_fn_emits_k_records_per_good_source_and_dead_letters_for_bad_ones():
    good = encode(photo_like(np.random.default_rng(1), 30, 40), "PNG")
    sources = [
        SourceImage("a/1.png", 0, "a", data=good),
        SourceImage("b/2.png", 1, "b", data=good),
        SourceImage("b/bad.png", 1, "b", data=b"<html>not an image</html>"),
        SourceImage("a/missing.png", 0, "a", path="/nonexistent/a/missing.png"),
    ]
    with BeamTestPipeline(runner=FnApiRunner()) as p:
        out = (
            p
            | beam.Create(sources)
            | beam.ParDo(ExpandFn(PRESETS["imagedatagenerator"], copies=3, seed=0)).with_outputs(
                DEAD_LETTER, main="records"
            )
        )
        keyed = out.records | "Key" >> beam.Map(
            lambda r: (r["source_key"], r["copy_index"], r["label"], r["label_name"])
        )
        assert_that(
            keyed,
            equal_to(
                [(k, c, lab, name) for k, lab, name in [("a/1.png", 0, "a"), ("b/2.png", 1, "b")] for c in (1, 2, 3)]
            ),
        )
        reasons = out.dead_letter | "Reason" >> beam.Map(lambda d: (d["source_key"], d["stage"], d["reason"]))
        assert_that(
            reasons,
            equal_to([("b/bad.png", "decode", "not_an_image"), ("a/missing.png", "read", "unreadable")]),
            label="dead letters",
        )

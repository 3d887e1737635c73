"""Airflow DAG: a nightly beam-expand run on Dataflow (copy into your DAGs folder; adjust the constants).

Uses the Apache Beam provider's ``BeamRunPythonPipelineOperator`` with ``beam_jobs/pipeline.py`` as the
pipeline file; every pipeline option below is passed to ``beam-expand run`` untouched.
"""

from datetime import datetime

from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

BUCKET = "gs://my-bucket"
IMAGE = "europe-docker.pkg.dev/my-project/images/beam-expand:0.1.0"

with DAG("beam_expand_nightly", start_date=datetime(2026, 1, 1), schedule="15 2 * * *", catchup=False) as dag:
    BeamRunPythonPipelineOperator(
        task_id="expand",
        py_file="/opt/beam-expand/beam_jobs/pipeline.py",
        runner="DataflowRunner",
        pipeline_options={
            "source": f"{BUCKET}/images",
            "output": f"{BUCKET}/expanded",  # a refresh root: versions/ + LATEST
            "refresh": True,
            "incremental": True,
            "keep_versions": 7,
            "max_bad_fraction": 0.02,
            "copies": 5,
            "seed": 0,
            "no_progress": True,
            "project": "my-project",
            "region": "europe-west1",
            "temp_location": f"{BUCKET}/tmp",
            "sdk_container_image": IMAGE,
        },
        py_requirements=["beam-expand @ file:///opt/beam-expand"],
        py_interpreter="python3.11",
    )

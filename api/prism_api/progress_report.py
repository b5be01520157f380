"""The progress endpoint's contract: Prometheus metric names the pipeline serves and the operator reads.

The pipeline's progress actor serves these as Prometheus text on PROGRESS_PORT of the Ray head (a
container port named PROGRESS_PORT_NAME, so it is on the head Service). Counters are exposed with
the `_total` suffix on their samples; read them by sample name.
"""

PROGRESS_PORT = 9090
PROGRESS_PORT_NAME = "progress"
PROGRESS_PATH = "/metrics"

FILES_TOTAL = "prism_files_total"                 # gauge: files listed
FILES_DONE = "prism_files_done_total"             # counter: files fully processed
FILES_FAILED = "prism_files_failed_total"         # counter: files in the failure ledger
FILES_SKIPPED = "prism_files_skipped_total"       # counter: files skipped by `incremental`
ITEMS = "prism_items_total"                       # counter{extractor}: items an extractor processed
ITEMS_FAILED = "prism_items_failed_total"         # counter{extractor}: items an extractor failed on
POINTS_WRITTEN = "prism_points_written_total"     # counter: points upserted into Qdrant
BYTES_READ = "prism_bytes_read_total"             # counter: bytes fetched from the source
DECODES = "prism_decodes_total"                   # counter: file decodes (== files when read once)
CPU_SECONDS = "prism_cpu_seconds_total"           # counter: CPU-seconds of stage work
GPU_SECONDS = "prism_gpu_seconds_total"           # counter: GPU-seconds of stage work
FAILURE_SAMPLE = "prism_failure_sample"           # gauge{uri,stage,error} = 1, at most 10 samples
PIPELINE_FINISHED = "prism_pipeline_finished"     # gauge: 1 once the pipeline has finished
START_TIME = "prism_pipeline_start_time_seconds"  # gauge: unix time the pipeline started
OUTCOME = "prism_pipeline_outcome"                # gauge{outcome} = 1 once the pipeline has its verdict
                                                  # (spec.entrypoint.Outcome), absent before

# Labels on every sample: which job and attempt the counters belong to. On a shared RayCluster
# (`cluster.existing`) another job's driver may hold the progress port; readers drop samples whose
# labels are not their own job's and attempt's.
JOB_LABEL = "job"
NAMESPACE_LABEL = "namespace"
ATTEMPT_LABEL = "attempt"

# Environment variables the operator sets on Ray pods and the pipeline reads.
ENV_QDRANT_API_KEY = "QDRANT_API_KEY"

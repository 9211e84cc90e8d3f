#!/usr/bin/env bash
# Spark resource discovery script for GPUs (spark.{driver,executor}.resource.gpu.discoveryScript):
# prints the CUDA devices nvidia-smi lists as Spark's ResourceInformation JSON, as Spark's own
# examples/src/main/scripts/getGpusResources.sh does (pip's pyspark does not ship that file).
set -euo pipefail
addresses=$(nvidia-smi --query-gpu=index --format=csv,noheader | tr -d ' ' | paste -sd, - | sed 's/,/","/g')
echo "{\"name\": \"gpu\", \"addresses\": [\"${addresses}\"]}"

#!/bin/bash
# Run once by the influxdb image's entrypoint, after the first start's setup (it runs the executable *.sh in
# /docker-entrypoint-initdb.d with the influx CLI already pointed at the new server with the admin token).
#
# Grafana's dashboards query with InfluxQL, which addresses a database and a retention policy, not a
# bucket: map database "<bucket>" with retention policy "autogen" onto the bucket, as its default.
set -euo pipefail

influx v1 dbrp create \
    --org "${DOCKER_INFLUXDB_INIT_ORG}" \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
    --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
    --rp autogen \
    --default

#!/bin/bash
# Run once by the influxdb image's entrypoint after the first start's setup (like create-dbrp.sh), with the
# influx CLI pointed at the new server with the admin token.
#
# Grafana only reads: give it a token that can read the bucket and nothing else, never the admin token. The
# token goes to the volume Grafana mounts read-only (docker-compose.yml reads it into INFLUX_TOKEN for the
# provisioned datasource).
set -euo pipefail

out=/var/lib/firmware-bridge-grafana/influx-read-token
token="$(influx auth create \
    --org "${DOCKER_INFLUXDB_INIT_ORG}" \
    --read-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
    --description "grafana (read-only)" \
    --hide-headers | cut -f3)"
[ -n "${token}" ] || { echo "grafana-read-token.sh: no token created" >&2; exit 1; }
printf '%s\n' "${token}" > "${out}.new"
chmod 0444 "${out}.new"
mv "${out}.new" "${out}"

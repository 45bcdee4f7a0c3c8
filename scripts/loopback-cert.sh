#!/usr/bin/env bash
# A private CA and a server certificate for 127.0.0.1 (docs/tls.md), for the bench scripts'
# HTTPS runs: writes DIR/ca.pem, DIR/server.pem and DIR/server.key (P-256, valid one day).
#
#   scripts/loopback-cert.sh DIR
set -euo pipefail
DIR=${1:?usage: scripts/loopback-cert.sh DIR}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=worklease bench CA" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=worklease" \
  -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
  -days 1 -extfile <(printf 'subjectAltName = IP:127.0.0.1\n') -out "$DIR/server.pem" 2>/dev/null

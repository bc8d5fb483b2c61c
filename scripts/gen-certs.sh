#!/usr/bin/env bash
# Makes a throwaway CA and certificates for tests and examples, with the openssl CLI.
# Usage: scripts/gen-certs.sh [DIR]   (default target/certs, which git ignores)
#
# Never for production, and never commit the keys. What it makes in DIR (PEM; keys PKCS#8,
# mode 600):
#   ca.crt ca.key                        CA "ringway test CA", ECDSA P-256, 10 years
#   a.example.test.crt .key              server, ECDSA P-256, SAN DNS:a.example.test
#   a.example.test.rsa.crt .key          the same name, RSA 2048
#   b.example.test.crt .key              server, ECDSA P-256, SAN DNS:b.example.test
#   b.example.test.rsa.crt .key          the same name, RSA 2048
#   wild.example.test.crt .key           server, ECDSA P-256, SAN DNS:*.wild.example.test,
#                                        DNS:wild.example.test
#   wild.example.test.rsa.crt .key       the same names, RSA 2048
#   client.crt client.key                client (mTLS), ECDSA P-256, SAN DNS:client.example.test,
#                                        URI:spiffe://example.test/client
# All leaves are signed by the CA, valid 825 days, with the extended key usage of their role.
#
# Idempotent: a certificate that exists, matches its key, verifies against the CA and is valid
# for another day is kept; anything else is made again (a new CA remakes every leaf). Prints
# what it made and what it kept.
set -euo pipefail

dir="${1:-$(cd "$(dirname "$0")/.." && pwd)/target/certs}"
command -v openssl >/dev/null 2>&1 || { echo "gen-certs: openssl is not installed" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
umask 077
# One run at a time per directory (tests and scripts may ask for the same one at once): the
# lock is on the directory itself, so it leaves no file behind.
if command -v flock >/dev/null 2>&1; then
  exec 9<"$dir"
  flock -w 120 9 || { echo "gen-certs: $dir is locked by another run for 120 s" >&2; exit 1; }
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

new_key() { # FILE ec|rsa
  case "$2" in
    ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ;;
  esac
}

# Whether CERT exists, matches KEY, is valid for another day and (for a leaf) verifies.
usable() { # CERT KEY [leaf]
  [ -s "$1" ] && [ -s "$2" ] || return 1
  [ "$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null)" = \
    "$(openssl pkey -in "$2" -pubout 2>/dev/null)" ] || return 1
  openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1 || return 1
  if [ "${3:-}" = leaf ]; then
    openssl verify -CAfile ca.crt "$1" >/dev/null 2>&1 || return 1
  fi
}

made=()
kept=()

if usable ca.crt ca.key; then
  kept+=(ca.crt)
else
  new_key ca.key ec
  cat >"$scratch/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ringway test CA
O = ringway tests
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
  openssl req -x509 -new -config "$scratch/ca.cnf" -extensions v3_ca -key ca.key \
    -sha256 -days 3650 -set_serial "0x$(openssl rand -hex 16)" -out ca.crt
  chmod 644 ca.crt
  made+=("ca.crt (ECDSA P-256)")
fi

leaf() { # STEM ec|rsa server|client CN SAN
  local stem="$1" alg="$2" role="$3" cn="$4" san="$5"
  if usable "$stem.crt" "$stem.key" leaf; then
    kept+=("$stem.crt")
    return
  fi
  new_key "$stem.key" "$alg"
  local usage="digitalSignature"
  [ "$alg" = rsa ] && usage="digitalSignature, keyEncipherment"
  local eku="serverAuth"
  [ "$role" = client ] && eku="clientAuth"
  cat >"$scratch/$stem.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, $usage
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  openssl req -new -key "$stem.key" -subj "/O=ringway tests/CN=$cn" -out "$scratch/$stem.csr"
  openssl x509 -req -in "$scratch/$stem.csr" -CA ca.crt -CAkey ca.key \
    -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 825 \
    -extfile "$scratch/$stem.ext" -out "$stem.crt" 2>/dev/null
  chmod 644 "$stem.crt"
  local kind="ECDSA P-256"
  [ "$alg" = rsa ] && kind="RSA 2048"
  made+=("$stem.crt ($kind, $role, $san)")
}

for name in a.example.test b.example.test; do
  leaf "$name" ec server "$name" "DNS:$name"
  leaf "$name.rsa" rsa server "$name" "DNS:$name"
done
wild="DNS:*.wild.example.test, DNS:wild.example.test"
leaf wild.example.test ec server "*.wild.example.test" "$wild"
leaf wild.example.test.rsa rsa server "*.wild.example.test" "$wild"
leaf client ec client client.example.test \
  "DNS:client.example.test, URI:spiffe://example.test/client"

echo "gen-certs: in $dir"
for m in "${made[@]+"${made[@]}"}"; do echo "  made $m"; done
for k in "${kept[@]+"${kept[@]}"}"; do echo "  kept $k"; done

#!/usr/bin/env bash
# Installs the pinned tools the project needs into .tools/ (git-ignored), idempotently:
# Foundry 1.7.1 (anvil, forge, cast) and solc-js from the npm registry, a `solc` wrapper forge
# can use, OpenZeppelin contracts, and ethers (the real client of the RPC compatibility test). Versions are
# pinned in tools/package.json + package-lock.json.
# From Debian (as root, when missing): nodejs/npm, a C compiler, faketime, iproute2, chromium.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
FOUNDRY_VERSION="1.7.1"
SOLC_VERSION="$(sed -n 's/.*"solc": "\(.*\)".*/\1/p' "$ROOT/tools/package.json")"

say() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

# Installs Debian packages (as root, with apt-get) for what is missing; else stops with what needs them.
debian() {
  local why="$1"; shift
  if have apt-get && [ "$(id -u)" = 0 ]; then
    say "installing $* from Debian packages"
    apt-get update -qq >/dev/null && apt-get install -y -qq "$@" >/dev/null || die "could not install $* with apt-get"
  else
    die "$why (Debian: apt-get install $*)"
  fi
}

# Node.js and npm carry solc-js and fetch Foundry.
{ have node && have npm; } || debian "node and npm are required (Node.js >= 18)" nodejs npm
have cargo || die "cargo is required: install Rust stable (https://rustup.rs)"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing: rustup component add clippy"
# blst and c-kzg build C code.
have cc || debian "a C compiler (cc) is required to build blst and c-kzg" gcc libc6-dev
# The skewed-clock tests run nodes under libfaketime.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] \
  || debian "libfaketime is required by the skewed-clock tests" faketime
# The chaos suite runs each sequencer in a network namespace of its own (iproute2's `ip`).
have ip || debian "iproute2 (ip) is required by the chaos suite" iproute2
# The dashboard's browser test drives headless Chromium.
have chromium || debian "chromium is required by the dashboard's browser test" chromium

mkdir -p "$TOOLS/bin"
stamp="$TOOLS/.stamp"
want="$(cat "$ROOT/tools/package.json" "$ROOT/tools/package-lock.json" "$ROOT/scripts/solc-wrapper.js" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$TOOLS/node_modules" ]; then
  say "installing Foundry $FOUNDRY_VERSION, solc-js $SOLC_VERSION, OpenZeppelin, ethers from the npm registry"
  cp "$ROOT/tools/package.json" "$ROOT/tools/package-lock.json" "$TOOLS/"
  (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error >"$TOOLS/npm.log" 2>&1) \
    || { tail -20 "$TOOLS/npm.log" >&2; die "npm could not install the pinned tools (see $TOOLS/npm.log); is the npm registry reachable?"; }
  for t in anvil forge cast; do
    bin="$TOOLS/node_modules/@foundry-rs/$t-linux-amd64/bin/$t"
    [ -x "$bin" ] || die "$t binary missing from @foundry-rs/$t-linux-amd64 (only linux-amd64 is supported)"
    ln -sf "$bin" "$TOOLS/bin/$t"
  done
  cat > "$TOOLS/bin/solc" <<WRAP
#!/usr/bin/env bash
NODE_PATH="$TOOLS/node_modules" exec node "$ROOT/scripts/solc-wrapper.js" "\$@"
WRAP
  chmod +x "$TOOLS/bin/solc"
  echo "$want" > "$stamp"
fi

# Check what we installed actually runs, with the pinned versions.
for t in anvil forge cast; do
  "$TOOLS/bin/$t" --version 2>/dev/null | grep -q "Version: $FOUNDRY_VERSION" \
    || die "$t does not run or is not version $FOUNDRY_VERSION ($TOOLS/bin/$t)"
done
"$TOOLS/bin/solc" --version | grep -q "Version: $SOLC_VERSION" || die "solc wrapper does not answer version $SOLC_VERSION"
[ -f "$TOOLS/node_modules/@openzeppelin/contracts/token/ERC20/ERC20.sol" ] || die "OpenZeppelin contracts missing"
say "tools ready in $TOOLS/bin"

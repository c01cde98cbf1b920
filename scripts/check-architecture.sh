#!/usr/bin/env bash
# Fails when a forbidden arrow appears between the package's targets (docs/ARCHITECTURE.md):
# checks each target's declared dependencies (from `swift package dump-package`: the manifest
# only, no build) and the `import` lines of its Swift files. Also fails when a file imports one of
# the package's modules that its target does not declare. Needs swift and python3; takes a second.
#
#   scripts/check-architecture.sh              check the package
#   scripts/check-architecture.sh --self-test  plant one violation per rule in a copy of the
#                                              package's graph and check that each is reported
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  ""|--self-test) ;;
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  *) echo "check-architecture: unknown option '$1' (try --help)" >&2; exit 64 ;;
esac

manifest=$(mktemp)
# A scratch directory of its own: reading the manifest then never waits for the lock of a build
# running in .build.
scratch=$(mktemp -d)
trap 'rm -rf "$manifest" "$scratch"' EXIT
if ! swift package --scratch-path "$scratch" dump-package > "$manifest" 2> "$manifest.err"; then
  cat "$manifest.err" >&2; rm -f "$manifest.err"
  echo "check-architecture: swift package dump-package failed (is Package.swift valid?)" >&2
  exit 2
fi
rm -f "$manifest.err"

exec python3 - "$manifest" "${1:-}" <<'PY'
import json, os, re, sys

# Where a module may be used. Each rule: (who, forbidden modules, why). `who` is a set of target
# names, or ("all but", {...}) for every target except those.
ALL_BUT = "all but"
LIBRARIES = {"SRCore", "SRKernels", "SRCoding", "SRFormats", "SRNeural", "SRTraining", "SRStore",
             "SRTransport", "SRAMQP", "SRProtocol", "SRAggregation", "SRRoleSupport", "SRWorker",
             "SRAggregatorService", "SRSubmission", "SRCLISupport", "SRONNX",
             "SuccessiveRefinement"}
ROLES = {"SRRoleSupport", "SRWorker", "SRAggregatorService", "SRSubmission"}
# What the ONNX importer may reach: the model types and what they stand on. An allow-list, so that
# a new target (the roles, transports, …) is off limits to it without a rule of its own.
ONNX_MAY_REACH = {"SRCore", "SRFormats", "SRNeural", "SRKernels", "SRStore", "CSRBLAS", "CSRKernels", "CSRCrypto",
                  "SwiftProtobuf"}
# Rules on C modules hold for every Swift file (tests, benchmarks, executables, the fuzz package)
# and for direct declarations only: a target that depends on SRKernels reaches BLAS through it,
# which is the point.
DIRECT_RULES = [
    ((ALL_BUT, {"SRKernels"}), {"CSRBLAS", "CSRKernels"},
     "only SRKernels uses the BLAS and SIMD C modules"),
    ((ALL_BUT, {"SRAMQP"}), {"CSRRabbitMQ"}, "only SRAMQP uses rabbitmq-c"),
    ((ALL_BUT, {"SRStore"}), {"CSRCrypto"}, "only SRStore uses libcrypto"),
    # The generated onnx.pb.swift is internal to SRONNX; protobuf stays behind the importer.
    ((ALL_BUT, {"SRONNX"}), {"SwiftProtobuf"}, "only SRONNX uses swift-protobuf"),
]
# Rules between library targets hold for imports and for the whole declared dependency closure:
# SRProtocol may not reach SRStore through another target either.
REACH_RULES = [
    (ROLES | {"SRAggregation", "SRProtocol"}, {"SRAMQP", "CSRRabbitMQ"},
     "roles, aggregation and protocol know the Transport protocol, never AMQP"),
    ({"SRAggregatorService", "Aggregator"}, {"SRKernels", "CSRBLAS", "CSRKernels", "SRNeural", "SRTraining"},
     "the aggregator never links BLAS or the kernels"),
    ({"SRStore"}, {"SRNeural", "SRTraining", "SRKernels"}, "the store knows operands, not models or kernels"),
    ({"SRProtocol"}, {"SRStore", "SRNeural", "SRTraining"},
     "protocol is values only: no store, no neural"),
    ({"SRFormats"}, {"SRNeural", "SRTraining"}, "formats know no neural types"),
    ({"SRAggregation"}, {"Logging", "ServiceLifecycle", "CoreMetrics", "Metrics", "SRKernels", "CSRBLAS", "CSRKernels"},
     "aggregation is pure state machines: no logging, no metrics, no lifecycle, no kernels"),
    ((LIBRARIES - {"SRCLISupport"}), {"ArgumentParser"},
     "only SRCLISupport (linked by executables alone) may depend on ArgumentParser"),
    ((LIBRARIES - {"SRCLISupport"}), {"Prometheus"},
     "libraries count through swift-metrics and never pick a backend: only SRCLISupport (the executables' edge) bootstraps Prometheus"),
    ({"SRONNX"}, (LIBRARIES | {"CSRRabbitMQ", "CSRCrypto", "Logging", "ServiceLifecycle", "ArgumentParser"})
     - ONNX_MAY_REACH - {"SRONNX"},
     "the ONNX importer turns files into models: no transport, AMQP, roles or training"),
]
IMPORT = re.compile(
    r"^\s*(?:@[A-Za-z_]+(?:\([^)]*\))?\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?"
    r"import\s+(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?([A-Za-z_][A-Za-z0-9_]*)")


def applies(who, target):
    if isinstance(who, tuple):
        return target not in who[1]
    return target in who


def load_targets(manifest):
    """name -> (path, [declared dependency names])"""
    targets = {}
    for t in manifest["targets"]:
        deps = []
        for d in t["dependencies"]:
            kind, value = next(iter(d.items()))
            deps.append(value[0])
        path = t.get("path") or ("Tests/" if t["type"] == "test" else "Sources/") + t["name"]
        targets[t["name"]] = (path.rstrip("/"), deps)
    return targets


def swift_files(root_dirs):
    for top in root_dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in sorted(filenames):
                if f.endswith(".swift"):
                    yield os.path.join(dirpath, f)


def code_only(text):
    """`text` with comments and string literals blanked out (newlines kept), so that only real
    import declarations match: nested block comments, line comments, string literals (one-line and
    multi-line)."""
    out, i, n, depth = [], 0, len(text), 0
    while i < n:
        c = text[i]
        if depth:
            if text.startswith("/*", i): depth += 1; i += 2; continue
            if text.startswith("*/", i): depth -= 1; i += 2; continue
            out.append("\n" if c == "\n" else " "); i += 1; continue
        if text.startswith("/*", i): depth = 1; i += 2; continue
        if text.startswith("//", i):
            while i < n and text[i] != "\n": i += 1
            continue
        if text.startswith('"""', i):
            j = text.find('"""', i + 3)
            j = n if j < 0 else j + 3
            out.append("\n" * text.count("\n", i, j)); i = j; continue
        if c == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
            i += 1; continue
        out.append(c); i += 1
    return "".join(out)


def imports_of(path):
    with open(path, encoding="utf-8") as fh:
        lines = code_only(fh.read()).split("\n")
    return [(n, m.group(1)) for n, line in enumerate(lines, 1) if (m := IMPORT.match(line))]


def owner(path, targets):
    """The target whose folder holds `path` (the longest matching folder)."""
    best = None
    for name, (folder, _) in targets.items():
        if path == folder or path.startswith(folder + "/"):
            if best is None or len(folder) > len(targets[best][0]):
                best = name
    if best is None and path.startswith("Fuzz/"):
        return "SRFuzz (Fuzz package)"
    return best


def closure(name, targets):
    seen, stack = set(), [name]
    while stack:
        for d in targets.get(stack.pop(), ("", []))[1]:
            if d not in seen:
                seen.add(d)
                stack.append(d)
    return seen


def check(targets, files):
    """targets: name -> (folder, deps); files: [(path, target, [(line, module)])].
    Returns the violations, one message each."""
    problems = []
    package_modules = set(targets)
    for _, deps in targets.values():
        package_modules.update(deps)
    for name, (folder, deps) in sorted(targets.items()):
        for who, forbidden, why in DIRECT_RULES:
            if applies(who, name):
                for d in deps:
                    if d in forbidden:
                        problems.append(f"Package.swift: target {name} declares {d} — forbidden arrow "
                                        f"{name} → {d} ({why})")
        for who, forbidden, why in REACH_RULES:
            if applies(who, name):
                reach = closure(name, targets)
                for d in sorted(reach & forbidden):
                    how = "declares" if d in deps else "reaches (through its dependencies)"
                    problems.append(f"Package.swift: target {name} {how} {d} — forbidden arrow "
                                    f"{name} → {d} ({why})")
    for path, name, imports in files:
        if name is None:
            continue
        declared = set(targets.get(name, ("", []))[1])
        for line, module in imports:
            where = f"{path}:{line} (target {name}) imports {module}"
            forbidden_here = [why for who, forbidden, why in DIRECT_RULES + REACH_RULES
                              if module in forbidden and applies(who, name)]
            for why in forbidden_here:
                problems.append(f"{where} — forbidden arrow {name} → {module} ({why})")
            if (not forbidden_here and name in targets and module in package_modules and module != name
                    and module not in declared):
                problems.append(f"{where}, which Package.swift does not declare for {name}; add it to "
                                f"the target's dependencies (if the arrow is allowed: docs/ARCHITECTURE.md)")
    return problems


def scan(targets):
    roots = [d for d in ("Sources", "Tests", "Benchmarks", "Fuzz/Sources") if os.path.isdir(d)]
    return [(p, owner(p, targets), imports_of(p)) for p in swift_files(roots)]


def self_test(targets, files):
    """Each planted violation must be reported; the real package must pass."""
    cases = []
    def plant_import(target, module):
        t = dict(targets)
        folder = t[target][0]
        return t, files + [(f"{folder}/Planted.swift", target, [(1, module)])]
    def plant_dep(target, module):
        t = dict(targets)
        folder, deps = t[target]
        t[target] = (folder, deps + [module])
        return t, files
    for target, module in [("SRWorker", "CSRBLAS"), ("SRNeural", "CSRKernels"), ("SRWorker", "CSRRabbitMQ"),
                           ("SRNeural", "CSRCrypto"), ("SRWorker", "SRAMQP"), ("SRSubmission", "SRAMQP"),
                           ("SRAggregatorService", "SRAMQP"), ("SRAggregation", "SRAMQP"),
                           ("SRAggregatorService", "SRKernels"), ("SRAggregatorService", "SRNeural"),
                           ("Aggregator", "SRKernels"), ("SRStore", "SRNeural"),
                           ("SRProtocol", "SRAMQP"), ("SRProtocol", "SRStore"), ("SRProtocol", "SRNeural"),
                           ("SRProtocol", "SRTraining"), ("SRFormats", "SRNeural"),
                           ("SRAggregation", "Logging"), ("SRAggregation", "ServiceLifecycle"),
                           ("SRAggregation", "SRKernels"), ("SRCore", "ArgumentParser"),
                           ("SRWorker", "ArgumentParser"), ("SRAggregation", "CoreMetrics"),
                           ("SRWorker", "Prometheus"), ("SRAggregatorService", "Prometheus"),
                           ("SRNeural", "SwiftProtobuf"), ("SRCLISupport", "SwiftProtobuf"), ("SRONNX", "SRTransport"),
                           ("SRONNX", "SRAMQP"), ("SRONNX", "SRWorker"), ("SRONNX", "Logging")]:
        cases.append((f"{target} imports {module}", f"{target} → {module}", *plant_import(target, module)))
        cases.append((f"{target} declares {module}", f"{target} → {module}", *plant_dep(target, module)))
    # Through another target: SRProtocol → SRSubmission → SRStore; the aggregator → SRWorker → BLAS.
    cases.append(("SRProtocol reaches SRStore through SRSubmission", "SRProtocol → SRStore",
                  *plant_dep("SRProtocol", "SRSubmission")))
    cases.append(("Aggregator reaches CSRBLAS through SRWorker", "Aggregator → CSRBLAS",
                  *plant_dep("Aggregator", "SRWorker")))
    cases.append(("SRCore imports SRNeural without declaring it", "does not declare for SRCore",
                  *plant_import("SRCore", "SRNeural")))
    assert not check(targets, files), "the package itself must pass before the self-test means anything"
    failed = 0
    for label, expected, t, f in cases:
        found = [p for p in check(t, f) if expected in p]
        print(("ok      " if found else "MISSED  ") + label + (f"\n          {found[0]}" if found else ""))
        failed += not found
    if failed:
        print(f"check-architecture --self-test: {failed} planted violation(s) not reported")
        sys.exit(1)
    print(f"check-architecture --self-test: all {len(cases)} planted violations reported")


manifest = json.load(open(sys.argv[1]))
targets = load_targets(manifest)
files = scan(targets)
if sys.argv[2] == "--self-test":
    self_test(targets, files)
    sys.exit(0)
problems = check(targets, files)
if problems:
    for p in problems:
        print("check-architecture: " + p, file=sys.stderr)
    print(f"check-architecture: {len(problems)} forbidden or undeclared arrow(s); the allowed graph is "
          f"in docs/ARCHITECTURE.md", file=sys.stderr)
    sys.exit(1)
print(f"check-architecture: {len(targets)} targets, {len(files)} Swift files: no forbidden arrows")
PY

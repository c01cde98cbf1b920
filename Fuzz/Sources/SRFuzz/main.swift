// The fuzzer's entry point: reads the environment, then hands control to libFuzzer's driver,
// which parses the command line (corpus directories, -max_total_time, …) as usual.
//
// Environment:
//   SRFUZZ_TARGET=NAME          the target to fuzz (Targets.all; README.md lists them)
//   SRFUZZ_LIST=1               print the target names, one a line, and exit
//   SRFUZZ_WRITE_SEEDS=DIR      write every target's seed corpus to DIR/<target>/ and exit
//   SRFUZZ_TMPDIR=DIR           where path-only readers get their scratch file
import CFuzzDriver
import Foundation

/// The target of this process: fixed before the first input. A static, so it is set on first use
/// (globals in main.swift are set in order, before the checks below could run).
enum Selected {
    static let target: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["SRFUZZ_TARGET"] ?? ""
        guard let target = Targets.named(name) else {
            complain("set SRFUZZ_TARGET to one of: \(Targets.all.map(\.name).joined(separator: " ")) (got '\(name)')")
            exit(2)
        }
        return target
    }()
}

func complain(_ what: String) {
    FileHandle.standardError.write(Data("srfuzz: \(what)\n".utf8))
}

let environment = ProcessInfo.processInfo.environment
if environment["SRFUZZ_LIST"] != nil {
    for t in Targets.all { print(t.name) }
    exit(0)
}
if let directory = environment["SRFUZZ_WRITE_SEEDS"] {
    do {
        try Seeds.write(to: directory)
    } catch {
        complain("cannot write seeds: \(error)")
        exit(1)
    }
    exit(0)
}
_ = Selected.target

/// libFuzzer's per-input callback. Exported under its conventional name too: the runtime archive
/// (linked whole) has a `main` that refers to it, although SwiftPM's entry point replaces that main.
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Selected.target.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

// The driver may rewrite argc/argv, so it gets copies.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { testOneInput($0, $1) })

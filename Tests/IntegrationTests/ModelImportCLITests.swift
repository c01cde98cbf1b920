// `srproduce model import`: an ONNX fixture becomes a model directory that the rest of the
// tools accept; bad files and an occupied --out are refused with what to do.
import Foundation
import Testing

@Suite(.enabled(if: Executables.available, "build the executables first (scripts/test.sh does)"))
struct ModelImportCLITests {
    let dir: String = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("sr-import-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    func fixture(_ name: String) -> String {
        Executables.root.appendingPathComponent("Tests/Models/onnx-fixtures/\(name)/model.onnx").path
    }

    @Test func anONNXModelImportsIntoAModelDirectoryTheStoreAccepts() async throws {
        let out = dir + "/vgg"
        let args = ["model", "import", "--onnx", fixture("vgg-bn"), "--out", out, "--classes", "fashion-mnist",
                    "--activation-grid", "-12"]
        let (status, output) = try await Executables.run("srproduce", args)
        #expect(status == 0, "\(output)")
        for m in ["opset 17", "conv1 (conv2d [4, 1, 3, 3]) ← node 'features.0.conv' (Conv) + node 'features.0.bn' (BatchNormalization)",
                  "saved to \(out)", "srproduce model calibrate --model \(out)"] {
            #expect(output.contains(m), "'\(m)' not in:\n\(output)")
        }
        let manifest = try String(contentsOfFile: out + "/model.json", encoding: .utf8)
        #expect(manifest.contains("\"Ankle boot\"") && manifest.contains("\"activationGrid\" : -12"), "\(manifest)")
        // The model loads where models are used: registering it in the operand store.
        let (registered, digest) = try await Executables.run("srproduce", ["register", "vgg", "--model", out],
                                                             environment: ["SR_STORE": dir + "/store"])
        #expect(registered == 0 && digest.count == 65, "\(digest)")
        // A second import into the same directory needs --force.
        let (again, refusal) = try await Executables.run("srproduce", args)
        #expect(again != 0 && refusal.contains("--force"), "\(refusal)")
        let (forced, _) = try await Executables.run("srproduce", args + ["--force"])
        #expect(forced == 0)
    }

    @Test func filesThatCannotBeImportedAreRefusedWithWhatToDo() async throws {
        let garbage = dir + "/garbage.onnx"
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: garbage))
        for (args, mentions) in [
            (["--onnx", garbage], ["garbage.onnx", "not an ONNX model"]),
            (["--onnx", dir + "/missing.onnx"], ["missing.onnx", "No such file"]),
            (["--onnx", fixture("mlp-reshape"), "--classes", "fashion-mnist"], ["10 class names", "5 outputs"]),
            (["--onnx", fixture("vgg-bn"), "--resolutions", "0"], ["--resolutions must be in"]),
            // 48-bit operands through six linear layers could exceed Int128: the fix is named.
            (["--onnx", fixture("vgg-bn"), "--bits-per-upgrade", "8"], ["cannot be refined exactly", "--activation-grid"]),
        ] {
            let (status, output) = try await Executables.run("srproduce", ["model", "import", "--out", dir + "/m"] + args)
            #expect(status != 0, "exited 0:\n\(output)")
            for m in mentions { #expect(output.contains(m), "'\(m)' not in:\n\(output)") }
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/m/model.json"))
    }
}

// What `srproduce infer --wait` prints: each refinement as it arrives, then the final answer
// with the resolutions reached and, when labels are known, the accuracy.
import Foundation
import SRProtocol

struct InferenceProgress {
    let job: InferenceJob
    let labels: [Int]?
    let classNames: [String]?
    /// Resolution reached per sample (0 = none yet) and whether it is decided.
    var resolution: [Int]
    var decided: [Bool]

    init(job: InferenceJob, labels: [Int]?, classNames: [String]?) {
        self.job = job
        self.labels = labels
        self.classNames = classNames
        resolution = Array(repeating: 0, count: job.samples)
        decided = Array(repeating: false, count: job.samples)
    }

    mutating func apply(_ output: InferenceOutput) {
        for a in output.answers where resolution.indices.contains(a.sample) {
            resolution[a.sample] = a.resolution
            decided[a.sample] = a.decided
        }
    }

    var answered: Int { resolution.count { $0 > 0 } }

    func refinementLine(_ o: InferenceOutput) -> String {
        "\(o.job) r \(o.resolution)/\(o.resolutions)  " + String(format: "+%4d images  answered %d/%d  decided %d  %8.1f ms",
               o.answers.count, answered, job.samples, decided.count { $0 }, o.elapsedMs)
    }

    func refinementJSON(_ o: InferenceOutput) -> String {
        "{\"job\":\"\(o.job)\",\"status\":\"partial\",\"resolution\":\(o.resolution),\"of\":\(o.resolutions),\"images\":\(o.answers.count),"
            + "\"answered\":\(answered),\"decided\":\(decided.count { $0 }),\"elapsed_ms\":\(o.elapsedMs)}"
    }

    /// Images per resolution reached, index 0…R.
    func histogram(_ o: InferenceOutput) -> [Int] {
        var h = Array(repeating: 0, count: max(o.resolutions, 0) + 1)
        for a in o.answers { h[min(max(a.resolution, 0), h.count - 1)] += 1 }
        return h
    }

    func correct(_ o: InferenceOutput) -> Int? {
        guard let labels else { return nil }
        return o.answers.count { labels.indices.contains($0.sample) && labels[$0.sample] == $0.label }
    }

    func summary(_ o: InferenceOutput) -> String {
        let h = histogram(o)
        var lines = [String]()
        let late = o.lateMs.map { String(format: ", %.0f ms after the deadline", $0) } ?? ""
        lines.append("final (\(o.status.rawValue)\(late))" + String(format: " at %.0f ms: %d/%d images answered, %d decided",
                            o.elapsedMs, o.answers.count { $0.resolution > 0 }, o.answers.count, o.answers.count(where: \.decided)))
        lines.append("  resolution reached: " + h.indices.filter { h[$0] > 0 }.map { "r\($0) \(h[$0])" }.joined(separator: ", "))
        let total = o.answers.count * o.resolutions
        lines.append(String(format: "  skipped %d of %d image-resolutions (%.1f %%): early exits and resolutions the rule skips", o.skipped, total,
                            100 * Double(o.skipped) / Double(max(total, 1))))
        if let c = correct(o) {
            lines.append(String(format: "  accuracy %.4f (%d/%d correct)", Double(c) / Double(max(o.answers.count, 1)), c, o.answers.count))
        }
        return lines.joined(separator: "\n")
    }

    /// The final answer as JSON, with `accuracy` and `correct` when labels are known.
    func finalJSON(_ o: InferenceOutput) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var object = try JSONSerialization.jsonObject(with: encoder.encode(o)) as? [String: Any] ?? [:]
        object["resolution_histogram"] = histogram(o)
        if let classNames {
            object["class_names"] = classNames
        }
        if let c = correct(o) {
            object["correct"] = c
            object["accuracy"] = Double(c) / Double(max(o.answers.count, 1))
        }
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }
}

// Layer schedules: the paper's grouping by significance, the one-pair variant, custom groups.
import Testing
@testable import SRCore

@Suite struct LayerScheduleTests {
    @Test func bySignificanceLayerSizes() throws {
        #expect(try LayerSchedule.bySignificance(chunksA: 2, chunksX: 2).layers.map(\.count) == [1, 2, 1])
        #expect(try LayerSchedule.bySignificance(chunksA: 3, chunksX: 3).layers.map(\.count) == [1, 2, 3, 2, 1])
        #expect(try LayerSchedule.bySignificance(chunksA: 2, chunksX: 3).layers.map(\.count) == [1, 2, 2, 1])
        #expect(try LayerSchedule.bySignificance(chunksA: 1, chunksX: 1).layers.map(\.count) == [1])
    }

    @Test func layersHoldPairsOfEqualSignificance() throws {
        let s = try LayerSchedule.bySignificance(chunksA: 3, chunksX: 4)
        for (l, layer) in s.layers.enumerated() {
            #expect(layer.allSatisfy { $0.a + $0.x == l })
        }
        #expect(s.layers[0] == [ChunkPair(a: 0, x: 0)])
        #expect(s.layers.last == [ChunkPair(a: 2, x: 3)])
        #expect(s.layers.joined().count == 12)
    }

    @Test func onePairPerResolutionHasMSquaredResolutions() throws {
        let s = try LayerSchedule.onePairPerResolution(chunksA: 3, chunksX: 3)
        #expect(s.resolutionCount == 9)
        let significances = s.layers.map { $0[0].significance }
        #expect(significances == significances.sorted())
    }

    @Test func customScheduleMustCoverEveryPairOnce() throws {
        let p = { (a: Int, x: Int) in ChunkPair(a: a, x: x) }
        let ok = try LayerSchedule(chunksA: 2, chunksX: 2, layers: [[p(0, 0), p(0, 1)], [p(1, 0), p(1, 1)]])
        #expect(ok.resolutionCount == 2)
        let missing = #expect(throws: LayeringError.self) {
            try LayerSchedule(chunksA: 2, chunksX: 2, layers: [[p(0, 0)], [p(0, 1), p(1, 0)]])
        }
        #expect(missing?.message.contains("A2·x2") == true)
        let twice = #expect(throws: LayeringError.self) {
            try LayerSchedule(chunksA: 2, chunksX: 2, layers: [[p(0, 0), p(0, 0)], [p(0, 1), p(1, 0), p(1, 1)]])
        }
        #expect(twice?.code == .invalidSchedule)
        #expect(throws: LayeringError.self) {
            try LayerSchedule(chunksA: 2, chunksX: 2, layers: [[p(0, 0), p(0, 1), p(1, 0), p(2, 1)]])
        }
        #expect(throws: LayeringError.self) {
            try LayerSchedule(chunksA: 1, chunksX: 1, layers: [[p(0, 0)], []])
        }
    }
}

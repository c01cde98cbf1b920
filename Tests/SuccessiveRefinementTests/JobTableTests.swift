// The aggregator's job table driven without a broker, a clock or a thread: decoded inputs in,
// actions out, one test per lifecycle transition (parked → opening → open → replaying → final
// pending → closed) and for each way inputs are kept, acknowledged or dropped.
import Testing
@testable import SRAggregation
@testable import SRCore
@testable import SRProtocol
@testable import SRTransport

@Suite struct JobTableTests {
    typealias Table = JobTable<Int>
    typealias Fixture = JobAggregationTests.Fixture
    /// The fixture's job opens at t0 + 1 000 with its deadline at t0 + 2 000.
    let now = t0 + 1_100

    func record(_ f: Fixture) throws -> OpenRecord { try OpenRecord(decoding: f.plan.open) }

    /// Hands the table the open record and answers its `.verify` as the service would.
    func open(_ table: inout Table, _ f: Fixture, handle: Int = 1, redelivered: Bool = false, at time: Int64? = nil) throws
        -> [Table.Action] {
        let record = try record(f)
        let asked = table.handle(.openRecord(record, handle, redelivered: redelivered), now: time ?? now)
        #expect(verifications(asked).count == 1)
        return table.handle(.opened(try JobAggregation(record)), now: time ?? now)
    }

    func partials(_ f: Fixture) throws -> [PartialMessage] { try f.tasks.map { try f.partial($0) } }

    @Test func openPartialsCompleteAndCloseOnlyOnConfirm() throws {
        let f = try Fixture()
        var table = Table()
        let opened = try open(&table, f)
        #expect(counts(opened) == [.opened])
        #expect(table.phase(of: f.job.id, now: now) == .open)
        var emitted: [JobOutput] = []
        for (i, p) in try partials(f).enumerated() {
            let actions = table.handle(.partial(p, 10 + i, message: Message()), now: now)
            #expect(acks(actions).isEmpty)
            emitted += outputs(actions)
        }
        #expect(statuses(emitted).last == .complete)
        #expect(table.phase(of: f.job.id, now: now) == .finalPending)
        // Held until the final is confirmed: the open record and every partial.
        #expect(Set(table.held(f.job.id)) == Set([1] + (0..<f.tasks.count).map { 10 + $0 }))
        let closed = table.handle(.finalConfirmed(job: f.job.id), now: now)
        #expect(Set(acks(closed)) == Set([1] + (0..<f.tasks.count).map { 10 + $0 }))
        #expect(table.phase(of: f.job.id, now: now) == .closed)
        #expect(table.handle(.finalConfirmed(job: f.job.id), now: now).isEmpty)
        // A late copy of a partial is acknowledged and counted.
        let late = table.handle(.partial(try partials(f)[0], 99, message: Message()), now: now)
        #expect(acks(late) == [99] && counts(late) == [.latePartial])
    }

    @Test func partialsAndDeadlineParkedBeforeTheOpenRecord() throws {
        let f = try Fixture()
        var table = Table()
        let first = try partials(f)[0]
        #expect(table.handle(.partial(first, 2, message: Message()), now: now).isEmpty)
        #expect(table.handle(.deadline(job: f.job.id, 3), now: now).isEmpty)
        #expect(table.phase(of: f.job.id, now: now) == .unknown)
        #expect(table.held(f.job.id) == [2, 3])
        let opened = try open(&table, f)
        // The parked partial is taken, then the parked deadline answers the job.
        #expect(statuses(outputs(opened)) == [.deadline])
        #expect(table.phase(of: f.job.id, now: now) == .finalPending)
        #expect(Set(table.held(f.job.id)) == [1, 2, 3])
    }

    @Test func taskFailureParkedBeforeTheOpenRecordFailsTheJob() throws {
        let f = try Fixture()
        var table = Table()
        let failure = TaskFailure(job: f.job.id, task: "t0", worker: "w", reason: "out of memory")
        #expect(table.handle(.taskFailure(failure, 2), now: now).isEmpty)
        let opened = try open(&table, f)
        #expect(statuses(outputs(opened)) == [.failed])
        #expect(counts(opened).contains(.failedTask))
        // A second notice for the open job changes nothing but is held with it.
        let again = table.handle(.taskFailure(failure, 3), now: now)
        #expect(outputs(again).isEmpty && acks(again).isEmpty)
        #expect(Set(table.handle(.finalConfirmed(job: f.job.id), now: now).compactMap(acked)) == [1, 2, 3])
    }

    @Test func replayGraceDefersTheDeadline() throws {
        let f = try Fixture()
        var table = Table(configuration: .init(replayGraceMs: 300))
        _ = try open(&table, f, redelivered: true)
        #expect(table.phase(of: f.job.id, now: now) == .replaying)
        #expect(outputs(table.handle(.deadline(job: f.job.id, 2), now: now + 10)).isEmpty)
        #expect(outputs(table.handle(.tick, now: now + 299)).isEmpty)
        // The replayed partials arrive meanwhile and are taken.
        _ = table.handle(.partial(try partials(f)[0], 3, message: Message()), now: now + 200)
        let fired = table.handle(.tick, now: now + 300)
        #expect(statuses(outputs(fired)) == [.deadline])
        #expect(table.phase(of: f.job.id, now: now + 300) == .finalPending)
    }

    @Test func finalPublishFailureIsRetriedAndClosesOnlyOnConfirm() throws {
        let f = try Fixture()
        var table = Table()
        _ = try open(&table, f)
        let fired = table.handle(.deadline(job: f.job.id, 2), now: now)
        let final = try #require(outputs(fired).first)
        #expect(table.handle(.finalFailed(job: f.job.id, final), now: now).isEmpty)
        #expect(table.phase(of: f.job.id, now: now) == .finalPending)
        let retried = table.handle(.tick, now: now + 10)
        #expect(statuses(outputs(retried)) == [.deadline] && acks(retried).isEmpty)
        // Retried once per failure, not every tick.
        #expect(outputs(table.handle(.tick, now: now + 20)).isEmpty)
        #expect(Set(acks(table.handle(.finalConfirmed(job: f.job.id), now: now + 30))) == [1, 2])
        #expect(table.phase(of: f.job.id, now: now) == .closed)
    }

    @Test func unknownJobGraceDropsParkedInputs() throws {
        let f = try Fixture()
        var table = Table(configuration: .init(unknownJobGraceMs: 1_000))
        _ = table.handle(.partial(try partials(f)[0], 2, message: Message()), now: now)
        _ = table.handle(.deadline(job: f.job.id, 3), now: now + 500)
        #expect(acks(table.handle(.tick, now: now + 1_000)).isEmpty)
        // The partial has waited longer than the grace: all the job's inputs go.
        let dropped = table.handle(.tick, now: now + 1_001)
        #expect(Set(acks(dropped)) == [2, 3])
        #expect(logs(dropped) == ["dropping inputs of a job that was never opened"])
        #expect(table.phase(of: f.job.id, now: now) == nil)
    }

    @Test func duplicateOpenRecordsAreHeldWhileOpeningAndOpen() throws {
        let f = try Fixture()
        var table = Table()
        let record = try record(f)
        #expect(verifications(table.handle(.openRecord(record, 1, redelivered: false), now: now)).count == 1)
        let build = table.handle(.checksumsNeeded(job: f.job.id, key: "k"), now: now)
        #expect(build.count == 1)
        #expect(table.phase(of: f.job.id, now: now) == .opening)
        // Its record's delivery is kept whole meanwhile: a failed build dead-letters it.
        #expect(table.awaitsChecksums(1) && !table.awaitsChecksums(2))
        // A second job on the same matrix waits for the same build.
        let other = try Fixture(seed: 2)
        _ = table.handle(.openRecord(try self.record(other), 5, redelivered: false), now: now)
        #expect(table.handle(.checksumsNeeded(job: other.job.id, key: "k"), now: now).isEmpty)
        // While opening: a redelivered copy is held, a partial parked.
        #expect(table.handle(.openRecord(record, 2, redelivered: true), now: now).isEmpty)
        #expect(table.handle(.partial(try partials(f)[0], 3, message: Message()), now: now).isEmpty)
        // The unknown-job grace never drops an opening job's inputs.
        #expect(acks(table.handle(.tick, now: now + 60_000)).isEmpty)
        let ready = table.handle(.checksumsReady(key: "k", failure: nil), now: now)
        #expect(verifications(ready).count == 2)
        _ = table.handle(.opened(try JobAggregation(record)), now: now)
        #expect(table.phase(of: f.job.id, now: now) == .open && !table.awaitsChecksums(1))
        // While open: another copy is held too.
        #expect(table.handle(.openRecord(record, 4, redelivered: true), now: now).isEmpty)
        #expect(Set(table.held(f.job.id)) == [1, 2, 3, 4])
    }

    @Test func checksumFailureRefusesWithAFailedOutput() throws {
        let f = try Fixture()
        var table = Table()
        _ = table.handle(.openRecord(try record(f), 1, redelivered: false), now: now)
        _ = table.handle(.checksumsNeeded(job: f.job.id, key: "k"), now: now)
        let refused = table.handle(.checksumsReady(key: "k", failure: "no such matrix"), now: now)
        #expect(statuses(outputs(refused)) == [.failed])
        #expect(deadLetters(refused) == [1])
        #expect(table.phase(of: f.job.id, now: now) == nil)
    }

    @Test func invalidOpenRecordFailsTheJobItNames() {
        var table = Table()
        let actions = table.handle(.invalidOpenRecord(1, job: "job-9", reason: "bad"), now: now)
        #expect(statuses(outputs(actions)) == [.failed])
        #expect(deadLetters(actions) == [1])
        // Without a usable id, only the dead letter.
        #expect(outputs(table.handle(.invalidOpenRecord(2, job: nil, reason: "bad"), now: now)).isEmpty)
    }

    @Test func ledgerEntriesCloseJobsAnsweredBefore() throws {
        let f = try Fixture()
        var table = Table()
        #expect(acks(table.handle(.ledgerEntry(job: f.job.id, 1), now: now)) == [1])
        #expect(acks(table.handle(.openRecord(try record(f), 2, redelivered: true), now: now)) == [2])
        #expect(acks(table.handle(.deadline(job: f.job.id, 3), now: now)) == [3])
        #expect(table.phase(of: f.job.id, now: now) == .closed)
    }

    @Test func localClockAnswersADeadlineWhoseMessageIsLate() throws {
        let f = try Fixture()
        var table = Table(configuration: .init(safetyGraceMs: 50))
        _ = try open(&table, f)
        #expect(outputs(table.handle(.tick, now: f.job.deadline.epochMs + 49)).isEmpty)
        let fired = table.handle(.tick, now: f.job.deadline.epochMs + 50)
        #expect(statuses(outputs(fired)) == [.deadline])
        #expect(counts(fired).contains(.safetyTimerFiring))
        // Its message, when it comes, is held with the job and answers nothing.
        let message = table.handle(.deadline(job: f.job.id, 2), now: f.job.deadline.epochMs + 60)
        #expect(outputs(message).isEmpty && acks(message).isEmpty)
    }

    @Test func aDeadlineIssuedBeforeTheJobExistedIsAnEarlierJobsAndIsDropped() throws {
        // The fixture's job is created at t0 + 1 000. A deadline message from an earlier job with
        // the same id (left queued while no aggregator ran) says t0 + 500.
        let f = try Fixture()
        let stale = Deadline(epochMs: t0 + 500)
        var table = Table()
        _ = try open(&table, f)
        let dropped = table.handle(.deadline(job: f.job.id, 5, issued: stale), now: now)
        #expect(acks(dropped) == [5] && outputs(dropped).isEmpty)
        #expect(table.phase(of: f.job.id, now: now) == .open)
        // Its own deadline message (or one fired by hand, issued now) still answers it.
        let own = table.handle(.deadline(job: f.job.id, 6, issued: f.job.deadline), now: now)
        #expect(statuses(outputs(own)) == [.deadline])

        // The same when the stale message came before the open record (parked).
        var parked = Table()
        #expect(parked.handle(.deadline(job: f.job.id, 7, issued: stale), now: now).isEmpty)
        let opened = try open(&parked, f)
        #expect(outputs(opened).isEmpty)
        #expect(parked.phase(of: f.job.id, now: now) == .open)
        // Held with the job (acknowledged when it closes), like every input that was parked.
        #expect(parked.held(f.job.id).contains(7))
        let byHand = parked.handle(.deadline(job: f.job.id, 8, issued: Deadline(epochMs: now)), now: now)
        #expect(statuses(outputs(byHand)) == [.deadline])
    }

    @Test func inferenceJobParksPartialsRetriesTasksAndAnswersAtTheDeadline() throws {
        let job = InferenceJob(id: "inf-1", model: "m", images: "i", samples: 2, inputPartition: [1], resolutions: 2,
                               classes: 2, exitRule: "margin:0.5", blockSize: 1, createdMs: t0 + 1_000, deadline: Deadline(epochMs: t0 + 2_000))
        var table = Table()
        let task = InferenceTask(job: job, resolution: 1, indices: [0, 1])
        // Sample 0 is decided at resolution 1, sample 1 is not.
        let partial = InferencePartial(for: task, logits: [[3, 0], [0.1, 0]], computeMicroseconds: 1, worker: "w")
        #expect(table.handle(.inferencePartial(partial, 2), now: now).isEmpty)
        let opened = table.handle(.inferenceOpenRecord(job, .margin([0.5]), 1, redelivered: false), now: now)
        #expect(counts(opened) == [.opened])
        #expect(statuses(outputs(opened)) == [.partial])
        let tasks = opened.compactMap { a -> [Message]? in if case .publishTasks(_, let t) = a { t } else { nil } }
        #expect(tasks.map(\.count) == [1])
        // The publish failed: the tasks go out again on the next tick.
        _ = table.handle(.tasksUnsent(job: job.id, tasks[0]), now: now)
        #expect(table.hasUnsentTasks(job.id))
        let retried = table.handle(.tick, now: now + 10)
        #expect(retried.contains { if case .retryTasks(job.id, let t) = $0 { t.count == 1 } else { false } })
        #expect(!table.hasUnsentTasks(job.id))
        // A mat-vec partial under its id is refused.
        let f = try Fixture()
        var wrong = try partials(f)[0]
        wrong.job = job.id
        #expect(deadLetters(table.handle(.partial(wrong, 3, message: Message()), now: now)) == [3])
        let fired = table.handle(.deadline(job: job.id, 4), now: now + 20)
        #expect(statuses(outputs(fired)) == [.deadline])
        #expect(Set(acks(table.handle(.finalConfirmed(job: job.id), now: now + 30))) == [1, 2, 4])
    }
}

// MARK: Reading actions

func acked(_ a: JobTableAction<Int>) -> Int? { if case .ack(let h) = a { h } else { nil } }
func acks(_ actions: [JobTableAction<Int>]) -> [Int] { actions.compactMap(acked) }
func deadLetters(_ actions: [JobTableAction<Int>]) -> [Int] {
    actions.compactMap { if case .deadLetter(let h, _, _) = $0 { h } else { nil } }
}
func outputs(_ actions: [JobTableAction<Int>]) -> [JobOutput] {
    actions.compactMap { if case .emit(let o) = $0 { o } else { nil } }
}
func statuses(_ outputs: [JobOutput]) -> [OutputStatus] {
    outputs.map {
        switch $0 {
        case .matVec(let o): o.status
        case .inference(let o): o.status
        }
    }
}
func counts(_ actions: [JobTableAction<Int>]) -> [JobTable<Int>.Counter] {
    actions.compactMap { if case .count(let c) = $0 { c } else { nil } }
}
func logs(_ actions: [JobTableAction<Int>]) -> [String] {
    actions.compactMap { if case .log(_, let m, _) = $0 { m } else { nil } }
}
func verifications(_ actions: [JobTableAction<Int>]) -> [OpenRecord] {
    actions.compactMap { if case .verify(let r, _) = $0 { r } else { nil } }
}
